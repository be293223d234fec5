/*
 * quiet.h — silence stderr around code that logs expected failures (fault
 * loops, refused recoveries), so a test's own output stays readable.
 * Header-only; not thread-safe (it swaps fd 2 for the whole process).
 */
#ifndef MF_TEST_QUIET_H
#define MF_TEST_QUIET_H

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* Returns the saved stderr, for quiet_end. */
static inline int quiet_begin(void)
{
	fflush(stderr);
	int saved = dup(2);
	int dn = open("/dev/null", O_WRONLY);
	dup2(dn, 2);
	close(dn);
	return saved;
}

static inline void quiet_end(int saved)
{
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
}

#endif
