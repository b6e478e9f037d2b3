#include "lab/hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned int hist_bucket(uint64_t value)
{
	if (value < HIST_LINEAR)
		return (unsigned int)value;
	/* Octave k holds [2^k, 2^(k+1)); its top HIST_SUB_BITS bits below
	 * the leading one pick the sub-bucket. */
	unsigned int k = 63u - (unsigned int)__builtin_clzll(value);
	unsigned int shift = k - HIST_SUB_BITS;
	unsigned int sub = (unsigned int)(value >> shift) - HIST_SUB;

	return HIST_LINEAR + (k - 7u) * HIST_SUB + sub;
}

uint64_t hist_bucket_low(unsigned int idx)
{
	if (idx < HIST_LINEAR)
		return idx;
	unsigned int j = idx - HIST_LINEAR;
	unsigned int k = 7u + j / HIST_SUB;

	return (uint64_t)(HIST_SUB + j % HIST_SUB) << (k - HIST_SUB_BITS);
}

uint64_t hist_bucket_width(unsigned int idx)
{
	if (idx < HIST_LINEAR)
		return 1;
	return 1ULL << (7u + (idx - HIST_LINEAR) / HIST_SUB - HIST_SUB_BITS);
}

void hist_add(struct hist *h, uint64_t value)
{
	h->buckets[hist_bucket(value)]++;
	h->count++;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
	h->sum += (double)value;
	h->sumsq += (double)value * (double)value;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	if (!h->count)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;

	uint64_t rank = (uint64_t)ceil(q * (double)h->count);
	uint64_t seen = 0;

	if (rank < 1)
		rank = 1;
	for (unsigned int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen < rank)
			continue;
		uint64_t v = hist_bucket_low(i) +
			     (hist_bucket_width(i) - 1) / 2;
		if (v < h->min)
			v = h->min;
		if (v > h->max)
			v = h->max;
		return v;
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? h->sum / (double)h->count : 0;
}

double hist_stddev(const struct hist *h)
{
	if (h->count < 2)
		return 0;
	double mean = hist_mean(h);
	double var = h->sumsq / (double)h->count - mean * mean;

	/* sumsq - n * mean^2 can come out slightly negative by rounding. */
	return var > 0 ? sqrt(var) : 0;
}
