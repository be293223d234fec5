/*
 * clock.h — the one monotonic clock helper outside fs/: durations,
 * deadlines and timings (replay, snapshot, fsync cost) all read
 * CLOCK_MONOTONIC through mf_mono_ns, so no wall-clock step can make a
 * duration negative.  Pure; no locking, no errors (clock_gettime of
 * CLOCK_MONOTONIC cannot fail on Linux).
 */
#ifndef MF_CLOCK_H
#define MF_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mf_mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Seconds, for reports. */
static inline double mf_mono_sec(void)
{
	return (double)mf_mono_ns() / 1e9;
}

/* Move *t forward by ns (for pthread_cond_timedwait deadlines on a
 * CLOCK_MONOTONIC condition variable). */
static inline void mf_ts_add_ns(struct timespec *t, uint64_t ns)
{
	t->tv_sec += (time_t)(ns / 1000000000u);
	t->tv_nsec += (long)(ns % 1000000000u);
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

#endif
