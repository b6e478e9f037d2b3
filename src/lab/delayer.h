/* NFQUEUE packet-id arithmetic shared by the delayer and its tests. */
#ifndef SONDE_LAB_DELAYER_H
#define SONDE_LAB_DELAYER_H

#include <stdbool.h>
#include <stdint.h>

/* The kernel's own test in a batch verdict (nfnetlink_queue.c): ids are
 * serial numbers, so "after" survives the wrap at 2^32. */
static inline bool nfq_id_after(uint32_t id, uint32_t max)
{
	return (int32_t)(id - max) > 0;
}

/* The max id of a batch verdict that covers every packet queued now. It
 * must lie less than 2^31 ahead of the oldest held id, or the oldest would
 * count as "after" it: newest seen + 2^30 covers both the held packets (at
 * most the queue limit behind) and any whose message we have not read yet
 * (ahead). */
static inline uint32_t nfq_all_ids(uint32_t last_seen)
{
	return last_seen + 0x40000000u;
}

#endif
