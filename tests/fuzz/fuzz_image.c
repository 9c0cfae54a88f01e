/*
 * fuzz_image.c - any bytes as a serialized zone image (the seed corpus is
 * real images): the loader must refuse what it cannot answer from safely,
 * and answer from what it accepts.
 */
#include <stdint.h>
#include <stddef.h>

#include "engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t queries[][40] = {
		{ 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm',
		  'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1 },
		{ 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'x', 2, 'd', 'n', 7, 'e', 'x', 'a',
		  'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 16, 0, 1 },
	};
	static const size_t qlen[] = { 33, 34 };
	struct xd_error err = { "" };
	struct xd_image *img = NULL;
	uint8_t resp[4096];

	if (xd_image_load(data, size, &img, &err) != 0)
		return 0;
	for (size_t i = 0; i < sizeof(qlen) / sizeof(qlen[0]); i++)
		if (xd_answer(img, queries[i], qlen[i], resp, sizeof(resp), XD_ANSWER_TCP) < 0)
			abort();
	xd_image_free(img);
	return 0;
}
