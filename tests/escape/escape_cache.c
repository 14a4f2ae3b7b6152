/*
 * Poisoning sbx's filter cache from inside a sandbox: whatever a command
 * writes there could decide the filter of a later run. Parameters:
 * SBX_ESCAPE_CACHE (the cache directory), SBX_ESCAPE_CACHE_ENTRY (an entry's
 * file name in it), SBX_ESCAPE_FORGED (a file whose bytes cache-write puts into
 * the entry), SBX_ESCAPE_REPLACEMENT (a file cache-replace renames over it),
 * SBX_ESCAPE_EMPTY and SBX_ESCAPE_NONEMPTY (directories on the cache's file
 * system). Confined runs get the entry's own bytes as "forged" and
 * "replacement" content, so even an escape leaves a valid entry behind; the
 * unconfined control gets a real forgery. Directory renames are aimed at a
 * non-empty directory: past the permission checks the kernel answers
 * ENOTEMPTY and nothing moves.
 */
#include "escape.h"

#include <libgen.h>

static void entry_path(char *out, size_t len)
{
    snprintf(out, len, "%s/%s", param("CACHE"), param("CACHE_ENTRY"));
}

static int cache_write(const char *entry)
{
    char data[256 << 10];
    int src = open(param("FORGED"), O_RDONLY | O_CLOEXEC);
    long n = src < 0 ? -1 : read(src, data, sizeof data);
    if (n < 0) {
        printf("NOPARAM cannot read SBX_ESCAPE_FORGED: %s\n", strerror(errno));
        return 65;
    }
    int fd = open(entry, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return report("open a cache entry O_WRONLY|O_TRUNC", -1);
    return report("write the forged entry", write(fd, data, (size_t)n) == n ? n : -1);
}

int cache_attempt(const char *name)
{
    char entry[512], other[600], parent[512];

    if (strncmp(name, "cache-", 6))
        return -1;
    entry_path(entry, sizeof entry);
    if (!strcmp(name, "cache-create")) {
        scratch_path(other, sizeof other, param("CACHE"), "sbx-escape-new");
        int fd = open(other, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0)
            unlink(other);
        return report("create a file in the cache directory", fd);
    }
    if (!strcmp(name, "cache-symlink")) {
        scratch_path(other, sizeof other, param("CACHE"), "sbx-escape-link");
        long r = symlink(param("FORGED"), other);
        if (r == 0)
            unlink(other);
        return report("symlink in the cache directory", r);
    }
    if (!strcmp(name, "cache-write"))
        return cache_write(entry);
    if (!strcmp(name, "cache-truncate")) {
        struct stat st;
        if (stat(entry, &st) < 0)
            return report("stat the entry", -1);
        return report("truncate the entry (to its own size)", truncate(entry, st.st_size));
    }
    if (!strcmp(name, "cache-rename")) {
        snprintf(other, sizeof other, "%s.sbx-escape-%d", entry, (int)getpid());
        long r = rename(entry, other);
        if (r == 0)
            rename(other, entry);
        return report("rename an entry within the cache", r);
    }
    if (!strcmp(name, "cache-replace"))
        return report("rename a file over an entry", rename(param("REPLACEMENT"), entry));
    if (!strcmp(name, "cache-remove"))
        return report("unlink an entry", unlink(entry));
    if (!strcmp(name, "cache-link-out")) {
        scratch_path(other, sizeof other, tmpdir(), "sbx-escape-entry-link");
        long r = link(entry, other);
        if (r == 0)
            unlink(other);
        return report("hard-link an entry into $TMPDIR (then writable through the link)", r);
    }
    if (!strcmp(name, "cache-replace-dir"))
        return report("rename an empty directory over the cache directory",
                      rename(param("EMPTY"), param("CACHE")));
    if (!strcmp(name, "cache-move-dir"))
        return report("rename the cache directory away", rename(param("CACHE"), param("NONEMPTY")));
    if (!strcmp(name, "cache-move-parent")) {
        snprintf(parent, sizeof parent, "%s", param("CACHE"));
        return report("rename the cache's parent directory away",
                      rename(dirname(parent), param("NONEMPTY")));
    }
    if (!strcmp(name, "cache-chmod-same")) {
        /* Landlock has no right for modes: shown harmlessly with the current mode */
        struct stat st;
        if (stat(param("CACHE"), &st) < 0)
            return report("stat the cache directory", -1);
        return report("chmod the cache directory (to its own mode)",
                      chmod(param("CACHE"), st.st_mode & 07777));
    }
    return -1;
}
