/* <spool/error.h> compiles alone, first, with the project's strict flags. */
#include <spool/error.h>

int main(void)
{
    return SPOOL_OK == 0 && SPOOL_E_NOT_FOUND < -SPOOL_ERROR_BASE ? 0 : 1;
}
