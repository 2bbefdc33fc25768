/* The crash loop's power-cut shim: an LD_PRELOAD library that keeps, for the files of one
 * state database, what a disk would hold after a power cut (docs/SECURITY.md, "Crash loop").
 *
 * The lab compiles it with the machine's C compiler at first use (lab/crash_loop/power_cut.py)
 * and runs the charger daemon with it. Every fsync/fdatasync of a file whose path starts with
 * CHARGEPIN_POWER_CUT_FILE (the database, its -wal, -shm, -journal) copies the file's content at
 * that instant into the directory CHARGEPIN_POWER_CUT_IMAGE, atomically (a temporary file, then
 * rename), before the real call: a file is durable as of its last fsync, and never more. An
 * fsync of the database's directory (SQLite makes a new -wal's entry durable so) writes the
 * names present at that instant to the image's `entries` file: a file created since the daemon
 * started survives a cut only once a directory fsync listed it. sync() and syncfs() do both for
 * every such file. SQLite's unix VFS calls no other sync (no msync: it never maps the database
 * for writing by default; no sync_file_range).
 *
 * The cut itself (SIGKILL, then the state files replaced by their images) is the lab's. A copy
 * the shim cannot make ends the daemon with a message: a silent gap would make the images lie.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char watched[PATH_MAX]; /* the database's path: its files start with it */
static char directory[PATH_MAX]; /* its directory */
static const char *base = ""; /* the database's file name, inside `watched` */
static char image[PATH_MAX];
static int enabled;

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);

__attribute__((constructor)) static void power_cut_init(void) {
    const char *file = getenv("CHARGEPIN_POWER_CUT_FILE");
    const char *into = getenv("CHARGEPIN_POWER_CUT_IMAGE");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_syncfs = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    real_sync = (void (*)(void))dlsym(RTLD_NEXT, "sync");
    if (file == NULL || into == NULL || *file != '/' || *into != '/') {
        return;
    }
    if (strlen(file) >= sizeof watched || strlen(into) >= sizeof image) {
        return;
    }
    strcpy(watched, file);
    strcpy(directory, file);
    char *slash = strrchr(directory, '/');
    *slash = '\0';
    base = watched + (slash - directory) + 1;
    strcpy(image, into);
    enabled = 1;
}

static void fail(const char *what, const char *path) {
    fprintf(stderr, "chargepin power-cut shim: cannot %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static void join(char *out, const char *dir, const char *name) {
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
        errno = ENAMETOOLONG;
        fail("name", name);
    }
}

/* Replace image/name with `write_body`'s output, atomically. */
static void replace(const char *name, void (*write_body)(int, const void *), const void *arg) {
    char temporary[PATH_MAX], target[PATH_MAX];
    join(temporary, image, ".partial");
    join(target, image, name);
    int out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        fail("create", temporary);
    }
    write_body(out, arg);
    if (close(out) != 0) {
        fail("close", temporary);
    }
    if (rename(temporary, target) != 0) {
        fail("rename into", target);
    }
}

static void copy_body(int out, const void *arg) {
    const char *path = arg;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fail("open", path);
    }
    char buffer[65536];
    for (;;) {
        ssize_t got = read(in, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            fail("read", path);
        }
        if (got == 0) {
            break;
        }
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(out, buffer + done, (size_t)(got - done));
            if (put < 0 && errno == EINTR) {
                continue;
            }
            if (put < 0) {
                fail("write the image of", path);
            }
            done += put;
        }
    }
    close(in);
}

static int is_ours(const char *name) {
    return strncmp(name, base, strlen(base)) == 0;
}

static void entries_body(int out, const void *arg) {
    (void)arg;
    DIR *dir = opendir(directory);
    if (dir == NULL) {
        fail("list", directory);
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (is_ours(entry->d_name)) {
            dprintf(out, "%s\n", entry->d_name);
        }
    }
    closedir(dir);
}

static void snapshot_file(const char *path) {
    replace(path + strlen(directory) + 1, copy_body, path);
}

static void snapshot_all(void) {
    DIR *dir = opendir(directory);
    if (dir == NULL) {
        fail("list", directory);
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (is_ours(entry->d_name)) {
            char path[PATH_MAX];
            join(path, directory, entry->d_name);
            snapshot_file(path);
        }
    }
    closedir(dir);
    replace("entries", entries_body, NULL);
}

/* What an fsync of `fd` makes durable, copied into the image. */
static void capture(int fd) {
    if (!enabled) {
        return;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = readlink(link, path, sizeof path - 1);
    if (length < 0) {
        return; /* not a file descriptor: the real call reports EBADF */
    }
    path[length] = '\0';
    if (length > 10 && strcmp(path + length - 10, " (deleted)") == 0) {
        return; /* unlinked: no name left to be durable under */
    }
    int saved = errno;
    pthread_mutex_lock(&lock);
    if (strcmp(path, directory) == 0) {
        replace("entries", entries_body, NULL);
    } else if (strncmp(path, watched, strlen(watched)) == 0 &&
               strchr(path + strlen(directory) + 1, '/') == NULL) {
        snapshot_file(path);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
}

int fsync(int fd) {
    capture(fd);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    capture(fd);
    return real_fdatasync(fd);
}

int syncfs(int fd) {
    if (enabled) {
        pthread_mutex_lock(&lock);
        snapshot_all();
        pthread_mutex_unlock(&lock);
    }
    return real_syncfs(fd);
}

void sync(void) {
    if (enabled) {
        pthread_mutex_lock(&lock);
        snapshot_all();
        pthread_mutex_unlock(&lock);
    }
    real_sync();
}
