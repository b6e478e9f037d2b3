/* The delayer's hold queue and NFQUEUE id arithmetic: packets leave in
 * arrival order, each no earlier than its own deadline, through ring growth
 * and wrap-around; a batch verdict for "everything" covers every id held. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lab/delayer.h"
#include "lab/holdq.h"

#define DELAY 20000000ULL

static void push(struct holdq *q, uint32_t id, uint64_t arrival)
{
	struct holdq_entry e = { .arrival_ns = arrival,
				 .deadline_ns = arrival + DELAY,
				 .id = id,
				 .len = 100 + id };

	assert_int_equal(holdq_push(q, &e), 0);
}

static void test_releases_at_deadline_in_order(void **state)
{
	(void)state;
	struct holdq q;
	struct holdq_entry e;

	assert_int_equal(holdq_init(&q, 4), 0);
	assert_null(holdq_peek(&q));
	assert_false(holdq_pop_due(&q, UINT64_MAX, &e));

	push(&q, 1, 1000);
	push(&q, 2, 1000); /* same instant: still FIFO */
	push(&q, 3, 5000);
	assert_int_equal(holdq_len(&q), 3);
	assert_int_equal(holdq_peek(&q)->deadline_ns, 1000 + DELAY);

	/* Never early: one nanosecond before the deadline, nothing. */
	assert_false(holdq_pop_due(&q, 1000 + DELAY - 1, &e));
	assert_true(holdq_pop_due(&q, 1000 + DELAY, &e));
	assert_int_equal(e.id, 1);
	assert_int_equal(e.len, 101);
	assert_true(holdq_pop_due(&q, 1000 + DELAY, &e));
	assert_int_equal(e.id, 2);
	assert_false(holdq_pop_due(&q, 4999 + DELAY, &e));
	assert_true(holdq_pop_due(&q, 6000 + DELAY, &e));
	assert_int_equal(e.id, 3);
	assert_int_equal(e.arrival_ns, 5000);
	assert_int_equal(holdq_len(&q), 0);
	assert_int_equal(q.max_count, 3);
	holdq_free(&q);
}

/* A deadline earlier than the tail's (a clock step, a delay change) must not
 * let a packet overtake: it waits for the one before it. */
static void test_never_reorders(void **state)
{
	(void)state;
	struct holdq q;
	struct holdq_entry e;
	struct holdq_entry early = { .arrival_ns = 10, .deadline_ns = 10,
				     .id = 2 };

	assert_int_equal(holdq_init(&q, 16), 0);
	push(&q, 1, 1000);
	assert_int_equal(holdq_push(&q, &early), 0);
	assert_false(holdq_pop_due(&q, 500, &e));
	assert_true(holdq_pop_due(&q, 1000 + DELAY, &e));
	assert_int_equal(e.id, 1);
	assert_true(holdq_pop_due(&q, 1000 + DELAY, &e));
	assert_int_equal(e.id, 2);
	assert_int_equal(e.deadline_ns, 1000 + DELAY);
	holdq_free(&q);
}

/* Interleaved pushes and pops wrap the ring; growth must unwrap it without
 * losing or reordering anything. */
static void test_grows_across_wrap(void **state)
{
	(void)state;
	struct holdq q;
	struct holdq_entry e;
	uint32_t next_in = 1, next_out = 1;

	assert_int_equal(holdq_init(&q, 16), 0);
	assert_int_equal(q.cap, 16);
	for (int round = 0; round < 200; round++) {
		/* Net growth of 3 per round, with a wrapped head. */
		for (int i = 0; i < 7; i++, next_in++)
			push(&q, next_in, next_in);
		for (int i = 0; i < 4; i++, next_out++) {
			assert_true(holdq_pop(&q, &e));
			assert_int_equal(e.id, next_out);
			assert_int_equal(e.arrival_ns, next_out);
		}
	}
	assert_int_equal(holdq_len(&q), 600);
	assert_true(q.cap >= 600);
	assert_int_equal(q.cap & (q.cap - 1), 0);
	while (holdq_pop(&q, &e)) {
		assert_int_equal(e.id, next_out);
		next_out++;
	}
	assert_int_equal(next_out, next_in);
	assert_int_equal(q.max_count, 3 * 199 + 7); /* after the last pushes */
	holdq_free(&q);
}

static void test_release_all_ids(void **state)
{
	(void)state;
	/* Ids as serial numbers, also across the 2^32 wrap. */
	assert_false(nfq_id_after(5, 5));
	assert_false(nfq_id_after(4, 5));
	assert_true(nfq_id_after(6, 5));
	assert_true(nfq_id_after(2, 0xfffffffeu));
	assert_false(nfq_id_after(0xfffffffeu, 2));

	/* "All" covers 100000 held ids behind the newest seen and a million
	 * unread ones ahead, wherever the counter is. The first attempt used
	 * newest + 2^31 - 1, under which every held id but the newest two
	 * counted as "after": they stayed queued and were dropped at exit. */
	const uint32_t lasts[] = { 1, 150000, 0x7fffffffu, 0xffffff00u };
	for (size_t i = 0; i < sizeof(lasts) / sizeof(lasts[0]); i++) {
		uint32_t last = lasts[i], all = nfq_all_ids(last);

		for (uint32_t k = 0; k < 100000; k += 997)
			assert_false(nfq_id_after(last - k, all));
		for (uint32_t k = 1; k < 1000000; k += 9973)
			assert_false(nfq_id_after(last + k, all));
		assert_true(nfq_id_after(last - 3, last + 0x7fffffffu));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_releases_at_deadline_in_order),
		cmocka_unit_test(test_never_reorders),
		cmocka_unit_test(test_grows_across_wrap),
		cmocka_unit_test(test_release_all_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
