/*
 * export.h — memflux-check --export (export.c): a data dir as Redis commands.
 */
#ifndef MF_CHECK_EXPORT_H
#define MF_CHECK_EXPORT_H

#include <stdio.h>

/* Recover DIR as a mount would and write every key to out in the format
 * `redis-cli --pipe` reads.  Returns memflux-check's exit status (0, or 3
 * with a message on stderr). */
int mf_check_export(const char *dir, FILE *out);

#endif
