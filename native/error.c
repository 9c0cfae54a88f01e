/*
 * error.c - see error.h.
 */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

int xd_errorf(struct xd_error *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return rc;
}
