/* Allocation failure injection (alloc_fail.h). */
#include "alloc_fail.h"

int64_t alloc_fail_countdown = -1;

void alloc_fail_after(int64_t n)
{
    alloc_fail_countdown = n < 0 ? -1 : n;
}
