/* libFuzzer harness (e): a .npy header (the image at the start of an array object's user
 * area, or a .npy file) written by someone else.
 *
 * The whole input is the image, in an exact-size heap buffer, so ASan reports any read
 * outside it.  ms_npy_parse must return MS_OK or MS_E_LAYOUT; on MS_OK the results must
 * be consistent: the data offset inside the input, ndim within the limit, the count the
 * product of the shape, the descr span inside the header and itself valid under
 * ms_npy_check_descr.  The input is also given to ms_npy_check_descr as descr text. */
#include "array.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    uint8_t *buf = (uint8_t *)malloc(n ? n : 1);
    memcpy(buf, in, n);
    ms_npy_info info;
    ms_status st = ms_npy_parse(buf, n, &info);
    REQUIRE(st == MS_OK || st == MS_E_LAYOUT);
    if (st == MS_OK) {
        REQUIRE(info.data_offset <= n);
        REQUIRE(info.ndim <= MS_NPY_NDIM_MAX);
        REQUIRE(info.fortran_order <= 1);
        REQUIRE(info.descr_len > 0 && info.descr_offset + info.descr_len <= info.data_offset);
        uint64_t count = 1;
        for (uint32_t k = 0; k < info.ndim; k++)
            count *= info.shape[k];
        REQUIRE(count == info.count);
        REQUIRE(ms_npy_check_descr((const char *)buf + info.descr_offset,
                                   (size_t)info.descr_len) == MS_OK);
    }
    st = ms_npy_check_descr((const char *)buf, n);
    REQUIRE(st == MS_OK || st == MS_E_LAYOUT);
    free(buf);
    return 0;
}
