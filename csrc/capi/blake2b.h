/* BLAKE2b for the naming policy's long-name hash (see blake2b.c). */
#ifndef MS_CAPI_BLAKE2B_H
#define MS_CAPI_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

/* out[0..outlen) = BLAKE2b-(8*outlen)(data), unkeyed; 1 <= outlen <= 64. */
void ms_blake2b(const void *data, size_t len, uint8_t *out, size_t outlen);

#endif
