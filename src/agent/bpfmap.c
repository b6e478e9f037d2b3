#include "agent/bpfmap.h"

#include "lib/log.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool listed(const uint32_t *netns, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (netns[i] == v)
			return true;
	return false;
}

void netns_filter_sync(int map_fd, const uint32_t *netns, size_t n,
		       const char *who)
{
	uint32_t key, next, stale[256];
	size_t nstale = 0;
	uint8_t one = 1;
	void *prev = NULL;

	/* Delete after the walk: deleting during get_next_key restarts it.
	 * More than 256 stale entries are left for the next call. */
	while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
		if (!listed(netns, n, next) && nstale < 256)
			stale[nstale++] = next;
		key = next;
		prev = &key;
	}
	for (size_t i = 0; i < nstale; i++)
		bpf_map_delete_elem(map_fd, &stale[i]);
	for (size_t i = 0; i < n; i++)
		if (bpf_map_update_elem(map_fd, &netns[i], &one, BPF_ANY))
			log_warn("%s: cannot watch netns %u: %s", who, netns[i],
				 strerror(errno));
}

uint64_t percpu_sum(int map_fd, uint32_t key, int ncpus)
{
	uint64_t *percpu = calloc((size_t)ncpus, sizeof(uint64_t));
	uint64_t sum = 0;

	if (!percpu)
		return 0;
	if (bpf_map_lookup_elem(map_fd, &key, percpu) == 0)
		for (int c = 0; c < ncpus; c++)
			sum += percpu[c];
	free(percpu);
	return sum;
}

void percpu_counters_json(int map_fd, int ncpus, const char *const *names,
			  uint32_t n, json_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		if (names[i])
			json_object_set_new(out, names[i],
					    json_integer((json_int_t)percpu_sum(
						    map_fd, i, ncpus)));
}
