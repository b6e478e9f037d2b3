/* Clock readings in nanoseconds: CLOCK_MONOTONIC for timeouts and
 * intervals, CLOCK_REALTIME for the UTC times records and reports carry. */
#ifndef SONDE_CLOCK_H
#define SONDE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static inline int64_t real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

#endif
