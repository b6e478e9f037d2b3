/* Small map chores every sensor family shares: its netns filter map kept
 * equal to the agent's targets, and its per-CPU counters summed. */
#ifndef SONDE_BPFMAP_H
#define SONDE_BPFMAP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Makes the hash map `map_fd` (u32 netns inode -> u8) hold exactly
 * netns[0..n-1]; `who` names the family in warnings. */
void netns_filter_sync(int map_fd, const uint32_t *netns, size_t n,
		       const char *who);
/* Sum over CPUs of a per-CPU array's u64 at `key`; 0 if unreadable. */
uint64_t percpu_sum(int map_fd, uint32_t key, int ncpus);
/* Adds names[i]: sum of key i, for i < n (NULL names are skipped). */
void percpu_counters_json(int map_fd, int ncpus, const char *const *names,
			  uint32_t n, json_t *out);

#endif
