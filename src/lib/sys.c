#include "lib/sys.h"

#include "lib/log.h"

#include <errno.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sys_require_root(const char *what)
{
	if (geteuid() == 0)
		return 0;
	log_err("%s needs root (it loads eBPF programs and manages network "
		"namespaces); run it with sudo or as root",
		what);
	return -EPERM;
}

int sys_require_btf(const char *path)
{
	if (!path)
		path = SONDE_DEFAULT_BTF;
	if (access(path, R_OK) == 0)
		return 0;
	log_err("kernel BTF not found at %s (%s): sonde's CO-RE sensors need a "
		"kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's stock "
		"kernels have it); boot such a kernel, or point --btf at a BTF "
		"file for this kernel",
		path, strerror(errno));
	return -ENOENT;
}

bool sys_have_tool(const char *tool)
{
	const char *path = getenv("PATH");
	char candidate[PATH_MAX];

	if (!path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);

		if (len > 0 && snprintf(candidate, sizeof(candidate), "%.*s/%s",
					(int)len, path, tool) < (int)sizeof(candidate) &&
		    access(candidate, X_OK) == 0)
			return true;
		path += len + (colon ? 1 : 0);
	}
	return false;
}

int sys_require_tool(const char *tool, const char *package)
{
	if (sys_have_tool(tool))
		return 0;
	log_err("'%s' is not installed or not on PATH; install it with: "
		"apt-get install %s  (or run scripts/deps.sh)",
		tool, package);
	return -ENOENT;
}

int sys_cgroup2_mount(char *buf, size_t len)
{
	FILE *f = setmntent("/proc/mounts", "r");
	struct mntent *m;
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while ((m = getmntent(f))) {
		if (strcmp(m->mnt_type, "cgroup2") == 0) {
			if (snprintf(buf, len, "%s", m->mnt_dir) < (int)len)
				rc = 0;
			else
				rc = -ENAMETOOLONG;
			break;
		}
	}
	endmntent(f);
	if (rc == -ENOENT)
		log_err("no cgroup v2 mount in /proc/mounts; mount one with: "
			"mount -t cgroup2 none /sys/fs/cgroup/unified");
	return rc;
}

int sys_exe_dir(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	if (snprintf(buf, len, "%s", exe) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

char *sys_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL, chunk[4096];
	size_t len = 0, n;
	FILE *m;

	if (!f)
		return NULL;
	m = open_memstream(&buf, &len);
	if (!m) {
		fclose(f);
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	int err = ferror(f) ? EIO : 0;
	fclose(f);
	fclose(m);
	if (err) {
		free(buf);
		errno = err;
		return NULL;
	}
	return buf;
}
