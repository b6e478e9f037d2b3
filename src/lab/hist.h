/* A fixed-size log-linear histogram for latency figures of long runs: the
 * delayer's lateness and the load generator's response times. Memory stays
 * constant however many samples arrive (a lab load generator runs for hours),
 * and quantiles are within 1.6 % of the true value: exact below 128, then 64
 * sub-buckets per power of two. Units are the caller's (ns or us). */
#ifndef SONDE_LAB_HIST_H
#define SONDE_LAB_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS) /* sub-buckets per octave */
#define HIST_LINEAR (2u * HIST_SUB)	/* exact values below this */
#define HIST_BUCKETS (HIST_LINEAR + (64u - 7u) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t min, max;
	double sum, sumsq; /* for the exact mean and standard deviation */
	uint64_t buckets[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t value);
/* The value at rank ceil(q * count), q in [0, 1]: the middle of its bucket,
 * clamped to [min, max] so that q = 0 and q = 1 are exact. 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);
double hist_mean(const struct hist *h);
double hist_stddev(const struct hist *h);

/* Exposed for tests: bucket index of a value and a bucket's bounds. */
unsigned int hist_bucket(uint64_t value);
uint64_t hist_bucket_low(unsigned int idx);
uint64_t hist_bucket_width(unsigned int idx);

#endif
