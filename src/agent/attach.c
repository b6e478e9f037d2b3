#include "agent/attach.h"

#include "lib/log.h"

#include <bpf/btf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

const char *tp_kind_name(enum tp_kind kind)
{
	switch (kind) {
	case TP_BTF:
		return "tp_btf";
	case TP_CLASSIC:
		return "tracepoint";
	default:
		return "none";
	}
}

static bool vmlinux_has_btf_tracepoint(const char *event)
{
	static struct btf *vmlinux;
	char name[128];

	if (!vmlinux) {
		vmlinux = btf__load_vmlinux_btf();
		if (!vmlinux)
			return false;
	}
	/* The kernel declares one typedef btf_trace_<event> per tracepoint
	 * it can attach BTF-typed programs to. */
	snprintf(name, sizeof(name), "btf_trace_%s", event);
	return btf__find_by_name_kind(vmlinux, name, BTF_KIND_TYPEDEF) > 0;
}

/* Classic tracepoints are resolved through tracefs; mount it when nobody
 * has (containers and minimal hosts often leave it unmounted). */
static bool tracefs_has_event(const char *category, const char *event)
{
	static const char *const roots[] = { "/sys/kernel/tracing",
					     "/sys/kernel/debug/tracing" };
	char path[256];

	for (int attempt = 0; attempt < 2; attempt++) {
		for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
			snprintf(path, sizeof(path), "%s/events/%s/%s/id",
				 roots[i], category, event);
			if (access(path, R_OK) == 0)
				return true;
		}
		if (attempt == 0 &&
		    mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL))
			log_debug("cannot mount tracefs: %s", strerror(errno));
	}
	return false;
}

enum tp_kind tracepoint_choose(const char *category, const char *event,
			       struct bpf_program *btf_prog,
			       struct bpf_program *classic_prog, char *why,
			       size_t why_len)
{
	enum tp_kind kind = TP_NONE;

	if (vmlinux_has_btf_tracepoint(event))
		kind = TP_BTF;
	else if (classic_prog && tracefs_has_event(category, event))
		kind = TP_CLASSIC;
	else
		snprintf(why, why_len,
			 classic_prog ? "tracepoint %s:%s is in neither the "
					"kernel's BTF nor tracefs"
				      : "tracepoint %s:%s is not in the kernel's "
					"BTF",
			 category, event);

	bpf_program__set_autoload(btf_prog, kind == TP_BTF);
	if (classic_prog)
		bpf_program__set_autoload(classic_prog, kind == TP_CLASSIC);
	return kind;
}
