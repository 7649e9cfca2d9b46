/* <spool/client.h> compiles alone, first, with the project's strict flags. */
#include <spool/client.h>

int main(void)
{
    struct spool_job_spec spec = {.queue = "q"};
    spool_client *c = NULL;
    return spec.priority == 0 && c == NULL && SPOOL_STATE_DONE == 5 ? 0 : 1;
}
