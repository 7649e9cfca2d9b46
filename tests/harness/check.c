#include "check.h"

#include <dirent.h>
#include <unistd.h>

int check_failures;

char *check_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    char *path = malloc(strlen(base) + strlen(tag) + 32);
    REQUIRE(path != NULL);
    sprintf(path, "%s/spool-%s-XXXXXX", base, tag);
    REQUIRE(mkdtemp(path) != NULL);
    return path;
}

void check_rmdir(const char *path)
{
    DIR *dir = opendir(path);
    if (dir == NULL)
        return;
    struct dirent *entry;
    char file[4096];
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        snprintf(file, sizeof(file), "%s/%s", path, entry->d_name);
        unlink(file);
    }
    closedir(dir);
    rmdir(path);
}
