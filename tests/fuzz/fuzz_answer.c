/*
 * fuzz_answer.c - any bytes as a query, over UDP and TCP: the query parser
 * and the answering core must answer or drop them within their buffers.
 */
#include <stdint.h>
#include <stddef.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t resp[65535];
	const struct xd_image *img = fuzz_image();
	int len;

	len = xd_answer(img, data, size, resp, 512, 0);
	if (len < 0 || len > 512)
		abort();
	len = xd_answer(img, data, size, resp, sizeof(resp), XD_ANSWER_TCP);
	if (len < 0 || (size_t)len > sizeof(resp))
		abort();
	return 0;
}
