/* Preconditions checked up front, each failing with what is wrong and the
 * command that fixes it, instead of an obscure errno deep inside libbpf. */
#ifndef SONDE_SYS_H
#define SONDE_SYS_H

#include <stdbool.h>
#include <stddef.h>

#define SONDE_DEFAULT_BTF "/sys/kernel/btf/vmlinux"

/* 0 when running as root, else logs why `what` needs it and returns -EPERM. */
int sys_require_root(const char *what);
/* 0 when the kernel's BTF is readable at path (NULL: the default). */
int sys_require_btf(const char *path);
/* 0 when `tool` is on PATH, else names the Debian package that has it. */
int sys_require_tool(const char *tool, const char *package);
bool sys_have_tool(const char *tool);

/* The cgroup v2 mount point from /proc/mounts (hosts with hybrid cgroups
 * mount it at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup). */
int sys_cgroup2_mount(char *buf, size_t len);

/* The whole file as a NUL-terminated string (malloc'd; the caller frees),
 * or NULL with errno set. For small files: configs, tokens, state. */
char *sys_read_file(const char *path);

/* Directory holding the running binary (resolved /proc/self/exe). */
int sys_exe_dir(char *buf, size_t len);

#endif
