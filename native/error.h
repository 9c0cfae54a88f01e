/*
 * error.h - filling a struct xd_error: one printf-style helper for every
 * part of the engine that explains its failures in words.
 */
#ifndef XDPDNS_ERROR_H
#define XDPDNS_ERROR_H

#include "engine.h"

/* Writes the message into err (when err is not NULL) and returns rc, so a
 * failure reads `return xd_errorf(err, -EINVAL, "...", ...);`. */
int xd_errorf(struct xd_error *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
