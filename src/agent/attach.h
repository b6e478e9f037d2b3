/* Picks how to hook a kernel tracepoint on the running kernel, in one place
 * (not #ifdefs spread around): tp_btf when the kernel's BTF describes the
 * tracepoint (cheapest, needs no tracefs), the classic perf tracepoint
 * otherwise, or nothing with a reason the agent reports. */
#ifndef SONDE_ATTACH_H
#define SONDE_ATTACH_H

#include <bpf/libbpf.h>
#include <stddef.h>

enum tp_kind {
	TP_NONE = 0,
	TP_BTF,
	TP_CLASSIC,
};

const char *tp_kind_name(enum tp_kind kind);

/* Enables exactly one of the two programs (before load) and returns which;
 * classic_prog may be NULL for a hook written only as tp_btf.
 * On TP_NONE both are disabled and `why` says what is missing. */
enum tp_kind tracepoint_choose(const char *category, const char *event,
			       struct bpf_program *btf_prog,
			       struct bpf_program *classic_prog, char *why,
			       size_t why_len);

#endif
