#include "lab/holdq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int holdq_init(struct holdq *q, size_t cap)
{
	size_t c = 16;

	memset(q, 0, sizeof(*q));
	while (c < cap)
		c <<= 1;
	q->ring = calloc(c, sizeof(*q->ring));
	if (!q->ring)
		return -ENOMEM;
	q->cap = c;
	return 0;
}

void holdq_free(struct holdq *q)
{
	free(q->ring);
	memset(q, 0, sizeof(*q));
}

/* Doubles the ring, unwrapping it so that the head is at index 0. */
static int holdq_grow(struct holdq *q)
{
	size_t cap = q->cap * 2;
	struct holdq_entry *ring;

	if (cap < q->cap || cap > SIZE_MAX / sizeof(*ring))
		return -ENOMEM;
	ring = malloc(cap * sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	size_t first = q->cap - q->head;
	if (first > q->count)
		first = q->count;
	memcpy(ring, q->ring + q->head, first * sizeof(*ring));
	memcpy(ring + first, q->ring, (q->count - first) * sizeof(*ring));
	free(q->ring);
	q->ring = ring;
	q->cap = cap;
	q->head = 0;
	return 0;
}

int holdq_push(struct holdq *q, const struct holdq_entry *e)
{
	if (q->count == q->cap) {
		int err = holdq_grow(q);
		if (err)
			return err;
	}

	size_t at = (q->head + q->count) & (q->cap - 1);
	struct holdq_entry *slot = &q->ring[at];

	*slot = *e;
	if (q->count) {
		const struct holdq_entry *tail =
			&q->ring[(q->head + q->count - 1) & (q->cap - 1)];
		if (slot->deadline_ns < tail->deadline_ns)
			slot->deadline_ns = tail->deadline_ns;
	}
	q->count++;
	if (q->count > q->max_count)
		q->max_count = q->count;
	return 0;
}

const struct holdq_entry *holdq_peek(const struct holdq *q)
{
	return q->count ? &q->ring[q->head] : NULL;
}

bool holdq_pop(struct holdq *q, struct holdq_entry *out)
{
	if (!q->count)
		return false;
	*out = q->ring[q->head];
	q->head = (q->head + 1) & (q->cap - 1);
	q->count--;
	return true;
}

bool holdq_pop_due(struct holdq *q, uint64_t now_ns, struct holdq_entry *out)
{
	if (!q->count || q->ring[q->head].deadline_ns > now_ns)
		return false;
	return holdq_pop(q, out);
}
