/* job_pool_prefault_start when the helper's mutex, condition variable or thread cannot be
 * made (issue 9, item 8: the init results were ignored, and the helper ran on an unusable
 * mutex). The test's own pthread_mutex_init / pthread_cond_init / pthread_create interpose
 * on libc's (the executable's definition wins) and fail on demand; otherwise they forward. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "job_pool.h"

/* libc's definition of name, into the function pointer *fn (ISO C has no cast from an object
 * pointer to a function pointer: copy the bytes). */
static void real_of(const char *name, void *fn, size_t size)
{
    void *sym = dlsym(RTLD_NEXT, name);
    REQUIRE(sym != NULL && size == sizeof(sym));
    memcpy(fn, &sym, size);
}

static int fail_mutex_init;
static int fail_cond_init;
static int fail_create;

int pthread_mutex_init(pthread_mutex_t *mutex, const pthread_mutexattr_t *attr)
{
    if (fail_mutex_init != 0)
        return fail_mutex_init;
    int (*real)(pthread_mutex_t *, const pthread_mutexattr_t *);
    real_of("pthread_mutex_init", &real, sizeof(real));
    return real(mutex, attr);
}

int pthread_cond_init(pthread_cond_t *cond, const pthread_condattr_t *attr)
{
    if (fail_cond_init != 0)
        return fail_cond_init;
    int (*real)(pthread_cond_t *, const pthread_condattr_t *);
    real_of("pthread_cond_init", &real, sizeof(real));
    return real(cond, attr);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                   void *arg)
{
    if (fail_create != 0)
        return fail_create;
    int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    real_of("pthread_create", &real, sizeof(real));
    return real(thread, attr, fn, arg);
}

/* Start with one step failing: the error comes back, no helper, and the pool still works. */
static void start_failing(int *which, int error)
{
    struct job_pool pool;
    job_pool_init(&pool);
    *which = error;
    CHECK_EQ(job_pool_prefault_start(&pool), -error);
    *which = 0;
    CHECK(pool.prefault == NULL);
    void *block = job_pool_alloc(&pool, 64);
    CHECK(block != NULL);
    job_pool_free(&pool, block, 64);
    job_pool_destroy(&pool);
}

static void test_mutex_init_fails(void)
{
    start_failing(&fail_mutex_init, EAGAIN);
}

static void test_cond_init_fails(void)
{
    start_failing(&fail_cond_init, ENOMEM);
}

static void test_create_fails(void)
{
    start_failing(&fail_create, EAGAIN);
}

static void test_all_succeed(void)
{
    struct job_pool pool;
    job_pool_init(&pool);
    CHECK_EQ(job_pool_prefault_start(&pool), 0);
    CHECK(pool.prefault != NULL);
    job_pool_destroy(&pool);
}

int main(void)
{
    RUN_TEST(test_mutex_init_fails);
    RUN_TEST(test_cond_init_fails);
    RUN_TEST(test_create_fails);
    RUN_TEST(test_all_succeed);
    return check_exit();
}
