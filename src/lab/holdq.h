/* The delayer's hold queue: packets in arrival order, each with its own
 * deadline (arrival + delay). With one fixed delay and a monotonic clock,
 * arrival order is deadline order, so a FIFO ring is also the priority
 * queue: the head is always the next packet due, and releasing from the head
 * can never reorder packets. */
#ifndef SONDE_LAB_HOLDQ_H
#define SONDE_LAB_HOLDQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct holdq_entry {
	uint64_t arrival_ns;  /* CLOCK_MONOTONIC */
	uint64_t deadline_ns; /* never earlier than the previous entry's */
	uint32_t id;	      /* NFQUEUE packet id */
	uint32_t len;	      /* packet length in bytes, 0 when unknown */
};

struct holdq {
	struct holdq_entry *ring;
	size_t cap; /* a power of two */
	size_t head;
	size_t count;
	size_t max_count; /* high-water mark */
};

/* cap is rounded up to a power of two; the ring doubles when full. */
int holdq_init(struct holdq *q, size_t cap);
void holdq_free(struct holdq *q);
/* Appends e. A deadline earlier than the tail's is raised to the tail's:
 * packets leave in the order they came, whatever the clock did. Returns 0
 * or -ENOMEM (the queue is unchanged then). */
int holdq_push(struct holdq *q, const struct holdq_entry *e);
/* The head (the next packet due), or NULL when empty. */
const struct holdq_entry *holdq_peek(const struct holdq *q);
/* Pops the head into *out when its deadline is <= now_ns. */
bool holdq_pop_due(struct holdq *q, uint64_t now_ns, struct holdq_entry *out);
/* Pops the head whatever its deadline (shutdown). */
bool holdq_pop(struct holdq *q, struct holdq_entry *out);

static inline size_t holdq_len(const struct holdq *q)
{
	return q->count;
}

#endif
