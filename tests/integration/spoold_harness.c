/* The integration harness (see spoold_harness.h). */
#include "spoold_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_log_tail(const struct spoold *s)
{
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return;
    char line[1024];
    fprintf(stderr, "--- spoold log (%s) ---\n", s->log);
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

static int spawn(struct spoold *s, const char *const *extra_args)
{
    const char *bin = getenv("SPOOLD");
    if (bin == NULL) {
        fprintf(stderr, "SPOOLD is not set (run through meson test)\n");
        return -1;
    }
    unlink(s->ready);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--data";
    argv[argc++] = s->data;
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--ready-file";
    argv[argc++] = s->ready;
    for (int i = 0; extra_args != NULL && extra_args[i] != NULL && argc < 62; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* If the test dies (a failed REQUIRE, an abort), its spoold dies with it instead of
         * lingering as an orphan; and spoold never holds the test runner's stdout open. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    return 0;
}

static int wait_ready(struct spoold *s)
{
    int64_t deadline = now_ms() + SPOOLD_START_TIMEOUT_MS;
    while (now_ms() < deadline) {
        FILE *f = fopen(s->ready, "r");
        if (f != NULL) {
            char line[64] = {0};
            bool ok = fgets(line, sizeof(line), f) != NULL;
            fclose(f);
            char *colon = ok ? strrchr(line, ':') : NULL;
            if (colon != NULL) {
                line[strcspn(line, "\n")] = '\0';
                snprintf(s->addr, sizeof(s->addr), "%s", line);
                s->port = (uint16_t)atoi(colon + 1);
                return 0;
            }
        }
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "spoold exited before listening (status %d)\n", status);
            s->pid = 0;
            print_log_tail(s);
            return -1;
        }
        usleep(5000);
    }
    fprintf(stderr, "spoold did not become ready in %d ms\n", SPOOLD_START_TIMEOUT_MS);
    print_log_tail(s);
    spoold_kill(s);
    return -1;
}

int spoold_start(struct spoold *s, const char *tag, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    const char *base = getenv("TMPDIR");
    snprintf(s->dir, sizeof(s->dir), "%s/spoold-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (mkdtemp(s->dir) == NULL)
        return -1;
    snprintf(s->data, sizeof(s->data), "%s/data", s->dir);
    snprintf(s->ready, sizeof(s->ready), "%s/ready", s->dir);
    snprintf(s->log, sizeof(s->log), "%s/spoold.log", s->dir);
    return spoold_restart(s, extra_args);
}

int spoold_restart(struct spoold *s, const char *const *extra_args)
{
    if (spawn(s, extra_args) != 0)
        return -1;
    return wait_ready(s);
}

int spoold_stop(struct spoold *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = 0;
    int64_t deadline = now_ms() + 20000;
    while (waitpid(s->pid, &status, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            fprintf(stderr, "spoold did not stop on SIGTERM in 20 s\n");
            print_log_tail(s);
            spoold_kill(s);
            return -1;
        }
        usleep(5000);
    }
    s->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "spoold exit status %d\n", status);
        print_log_tail(s);
        return -1;
    }
    return 0;
}

void spoold_kill(struct spoold *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static void remove_tree(const char *path)
{
    DIR *dir = opendir(path);
    if (dir == NULL) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char child[1200];
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
        if (e->d_type == DT_DIR)
            remove_tree(child); /* two levels at most: dir/data/files */
        else
            unlink(child);
    }
    closedir(dir);
    rmdir(path);
}

void spoold_cleanup(struct spoold *s)
{
    spoold_kill(s);
    if (s->dir[0] != '\0' && getenv("SPOOL_KEEP_TEST_DIRS") == NULL)
        remove_tree(s->dir);
}

int spoold_count_files(const struct spoold *s, const char *suffix)
{
    DIR *dir = opendir(s->data);
    if (dir == NULL)
        return -1;
    int count = 0;
    size_t n = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len >= n && strcmp(e->d_name + len - n, suffix) == 0)
            count++;
    }
    closedir(dir);
    return count;
}

bool spoold_log_contains(const struct spoold *s, const char *text)
{
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

uint64_t spoold_log_counter(const struct spoold *s, const char *key)
{
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return 0;
    char line[2048];
    uint64_t value = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *at = strstr(line, key);
        if (at != NULL)
            value = strtoull(at + strlen(key), NULL, 10);
    }
    fclose(f);
    return value;
}
