/*
 * te_native: the few things Node cannot do (shared memory, file mappings, aligned buffers, busy polling).
 *
 *  - create a named /dev/shm file, reserve its pages and map it MAP_SHARED,
 *    returned as an external ArrayBuffer (owner side);
 *  - map a peer's file and copy in or out of it (peer side). A peer's mapping
 *    is never handed to JS: every access goes through guarded_copy(), which
 *    turns the SIGBUS of a truncated file into a thrown error;
 *  - flock() for the reaper, posix_memalign() for direct I/O buffers;
 *  - map a whole existing file as an owned region (a store file segment).
 *
 * Everything else (names, sizes, unlink, close, fstat of owned fds) is done
 * in TypeScript. Context-aware (NAPI_MODULE_INIT), no per-process state but
 * the SIGBUS handler, so worker threads can load it.
 */
#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* SIGBUS guard                                                        */
/* ------------------------------------------------------------------ */

/*
 * Reading or writing a page of a MAP_SHARED file beyond its current end
 * raises SIGBUS, which kills the process. A peer that shrinks its file while
 * we hold a mapping of it would do that to us. Copies through peer mappings
 * therefore run with a thread-local jump buffer armed: the handler jumps
 * back out of memcpy and the copy reports an error. A SIGBUS anywhere else
 * is passed on to whatever handler was there before (by default: die), so
 * real faults are not hidden.
 *
 * initial-exec TLS: the handler must not call __tls_get_addr (it may
 * allocate); two words fit the static TLS surplus glibc keeps for dlopen.
 */
static __thread sigjmp_buf *volatile t_jump __attribute__((tls_model("initial-exec")));
static struct sigaction g_prev_bus;
static pthread_once_t g_install_once = PTHREAD_ONCE_INIT;
static int g_install_errno = 0;

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
  sigjmp_buf *jump = t_jump;
  /* si_code > 0: raised by the kernel for a fault, not sent by kill()/tgkill() */
  if (jump != NULL && info != NULL && info->si_code > 0) {
    t_jump = NULL;
    siglongjmp(*jump, 1);
  }
  if (g_prev_bus.sa_flags & SA_SIGINFO) {
    if (g_prev_bus.sa_sigaction != NULL) {
      g_prev_bus.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (g_prev_bus.sa_handler != SIG_DFL && g_prev_bus.sa_handler != SIG_IGN) {
    g_prev_bus.sa_handler(sig);
    return;
  }
  /* Default action: restore it and re-raise; a faulting instruction would
   * fault again anyway once we return. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGBUS, &dfl, NULL);
  raise(SIGBUS);
}

static void install_sigbus(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &g_prev_bus) != 0) g_install_errno = errno;
}

static int sigbus_guard_active(void) {
  struct sigaction cur;
  if (sigaction(SIGBUS, NULL, &cur) != 0) return 0;
  return (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus;
}

/* memcpy that returns -1 instead of dying when a page is beyond EOF. */
static int guarded_copy(void *dst, const void *src, size_t n) {
  sigjmp_buf jump;
  /* savemask=1: the handler runs with SIGBUS blocked; the jump must unblock it. */
  if (sigsetjmp(jump, 1) != 0) {
    t_jump = NULL;
    return -1;
  }
  t_jump = &jump;
  __asm__ __volatile__("" ::: "memory"); /* keep memcpy inside the armed window */
  memcpy(dst, src, n);
  __asm__ __volatile__("" ::: "memory");
  t_jump = NULL;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      const napi_extended_error_info *ei = NULL;                                    \
      napi_get_last_error_info(env, &ei);                                           \
      bool pending = false;                                                         \
      napi_is_exception_pending(env, &pending);                                     \
      if (!pending)                                                                 \
        napi_throw_error(env, "ERR_TE_SHM_NAPI",                                    \
                         ei && ei->error_message ? ei->error_message : #call);      \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

/* Throw Error{code, errno, syscall}; `code` is ours, errno the OS's (JS names it). */
static napi_value throw_err(napi_env env, const char *code, int err, const char *syscall, const char *msg) {
  napi_value m, c, e, n, s;
  char buf[512];
  if (err != 0)
    snprintf(buf, sizeof buf, "%s: %s (%s)", msg, strerror(err), syscall);
  else
    snprintf(buf, sizeof buf, "%s", msg);
  if (napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &m) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok) return NULL;
  if (napi_create_error(env, c, m, &e) != napi_ok) return NULL;
  if (napi_create_int32(env, err, &n) == napi_ok) napi_set_named_property(env, e, "errno", n);
  if (syscall && napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s) == napi_ok)
    napi_set_named_property(env, e, "syscall", s);
  napi_throw(env, e);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < want) {
    napi_throw_type_error(env, "ERR_TE_SHM_ARGS", "missing arguments");
    return -1;
  }
  return 0;
}

/* Path argument: a string of at most PATH_MAX-1 bytes, no NUL. */
static int get_path(napi_env env, napi_value v, char *out, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len == 0 || len >= cap) {
    napi_throw_type_error(env, "ERR_TE_SHM_ARGS", "path must be a non-empty string");
    return -1;
  }
  napi_get_value_string_utf8(env, v, out, cap, &len);
  if (strlen(out) != len) {
    napi_throw_type_error(env, "ERR_TE_SHM_ARGS", "path contains a NUL byte");
    return -1;
  }
  return 0;
}

/* A non-negative integer that fits a size_t and a double exactly. */
static int get_size(napi_env env, napi_value v, size_t *out, const char *what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0 || d != (double)(int64_t)d) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s must be a non-negative safe integer", what);
    napi_throw_range_error(env, "ERR_TE_SHM_ARGS", buf);
    return -1;
  }
  *out = (size_t)d;
  return 0;
}

static int get_bool(napi_env env, napi_value v, bool *out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "ERR_TE_SHM_ARGS", "expected a boolean");
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Mappings                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
  void *addr;
  size_t len;
  int fd;       /* peer mappings keep their fd for fstat checks; -1 for owned */
  int unmapped; /* munmap done (explicit release); finalizers must not repeat it */
  int refs;     /* finalizers still to run (owned: ArrayBuffer + handle; peer: handle) */
  int peer;
  int writable; /* peer mapped PROT_WRITE; a write to a PROT_READ mapping would be a SIGSEGV */
} mapping_t;

static const napi_type_tag MAPPING_TAG = {0x7465736d68616e64ULL, 0x6c65763100000001ULL};

static void mapping_unref(mapping_t *m) {
  if (--m->refs > 0) return;
  if (!m->unmapped) munmap(m->addr, m->len);
  if (m->fd >= 0) close(m->fd);
  free(m);
}

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_unref((mapping_t *)hint);
}

static mapping_t *get_mapping(napi_env env, napi_value v, int want_peer) {
  bool ok = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, &MAPPING_TAG, &ok) != napi_ok || !ok ||
      napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "ERR_TE_SHM_ARGS", "not a shared-memory mapping handle");
    return NULL;
  }
  mapping_t *m = (mapping_t *)p;
  if (m->peer != want_peer) {
    napi_throw_type_error(env, "ERR_TE_SHM_ARGS", want_peer ? "not a peer mapping handle" : "not an owned mapping handle");
    return NULL;
  }
  return m;
}

/*
 * Wrap m in a tagged external whose finalizer drops one reference. *adopted
 * tells whether that finalizer exists (then the caller must not unref on
 * failure: the GC will).
 */
static napi_value make_handle(napi_env env, mapping_t *m, int *adopted) {
  napi_value h;
  *adopted = 0;
  if (napi_create_external(env, m, finalize_mapping, m, &h) != napi_ok) return NULL;
  *adopted = 1;
  if (napi_type_tag_object(env, h, &MAPPING_TAG) != napi_ok) return NULL;
  return h;
}

/*
 * { fd, buffer, handle } over an owned MAP_SHARED mapping: an external
 * ArrayBuffer and a handle, both finalized. On failure everything is undone
 * (the file unlinked too when `unlink_on_fail`: a region we just created).
 */
static napi_value owned_mapping(napi_env env, void *addr, size_t size, int fd, const char *path, int unlink_on_fail) {
  mapping_t *m = calloc(1, sizeof *m);
  if (m == NULL) {
    munmap(addr, size);
    if (unlink_on_fail) unlink(path);
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", ENOMEM, "calloc", path);
  }
  m->addr = addr;
  m->len = size;
  m->fd = -1; /* the fd (and its lock) belongs to JS, which closes it on free */
  m->refs = 1;

  napi_value buffer, handle, fdv, obj;
  if (napi_create_external_arraybuffer(env, addr, size, finalize_mapping, m, &buffer) != napi_ok) {
    munmap(addr, size);
    free(m);
    if (unlink_on_fail) unlink(path);
    close(fd);
    return throw_err(env, "ERR_TE_SHM_NAPI", 0, NULL, "cannot create an external ArrayBuffer over the mapping");
  }
  m->refs = 2; /* from here on both the buffer and the handle must be finalized */
  int adopted;
  handle = make_handle(env, m, &adopted);
  if (handle == NULL) {
    if (!adopted) m->refs = 1; /* only the buffer's finalizer will run */
    close(fd);
    if (unlink_on_fail) unlink(path);
    return throw_err(env, "ERR_TE_SHM_NAPI", 0, NULL, "cannot create a mapping handle");
  }
  CHECK(napi_create_int32(env, fd, &fdv));
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_set_named_property(env, obj, "fd", fdv));
  CHECK(napi_set_named_property(env, obj, "buffer", buffer));
  CHECK(napi_set_named_property(env, obj, "handle", handle));
  return obj;
}

/*
 * createShm(path, size, populate) -> { fd, buffer, handle }
 * O_CREAT|O_EXCL 0600, a shared flock (the reaper's "owner alive" test: it
 * is released by the kernel however the process dies), posix_fallocate (pages
 * reserved now, so a full /dev/shm is an error here, not a SIGBUS on first
 * touch), then mmap, optionally MAP_POPULATE to skip the page faults.
 */
static napi_value CreateShm(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[4096];
  size_t size;
  bool populate;
  if (get_args(env, info, 3, argv) || get_path(env, argv[0], path, sizeof path) ||
      get_size(env, argv[1], &size, "size") || get_bool(env, argv[2], &populate))
    return NULL;
  if (size == 0) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "size must be positive");

  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return throw_err(env, "ERR_TE_SHM_OS", errno, "open", path);
  if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
    int e = errno;
    unlink(path);
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "flock", path);
  }
  int e = posix_fallocate(fd, 0, (off_t)size); /* returns the error, not -1 */
  if (e != 0) {
    unlink(path);
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "posix_fallocate", path);
  }
  void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  if (addr == MAP_FAILED) {
    e = errno;
    unlink(path);
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "mmap", path);
  }
  return owned_mapping(env, addr, size, fd, path, 1);
}

/*
 * mapFile(path) -> { fd, buffer, handle, size }
 * An existing regular file mapped MAP_SHARED read-write, for a store file
 * segment whose bytes live in the file (they outlive the process: the page
 * cache writes them back). An exclusive flock, released by the kernel however
 * we die, keeps two providers from serving one file. Released with
 * releaseOwned like a /dev/shm region; syncMapping flushes it first.
 */
static napi_value MapFile(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  if (get_args(env, info, 1, argv) || get_path(env, argv[0], path, sizeof path)) return NULL;
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return throw_err(env, "ERR_TE_SHM_OS", errno, "open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "fstat", path);
  }
  if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
    close(fd);
    return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, S_ISREG(st.st_mode) ? "the file is empty" : "not a regular file");
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "flock", path);
  }
  size_t size = (size_t)st.st_size;
  void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    int e = errno;
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "mmap", path);
  }
  napi_value obj = owned_mapping(env, addr, size, fd, path, 0);
  if (obj == NULL) return NULL;
  napi_value sz;
  CHECK(napi_create_double(env, (double)size, &sz));
  CHECK(napi_set_named_property(env, obj, "size", sz));
  return obj;
}

/* syncMapping(handle): msync(MS_SYNC) of an owned mapping still mapped (a no-op after release). */
static napi_value SyncMapping(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  mapping_t *m = get_mapping(env, argv[0], 0);
  if (m == NULL || m->unmapped) return NULL;
  if (msync(m->addr, m->len, MS_SYNC) != 0) return throw_err(env, "ERR_TE_SHM_OS", errno, "msync", "cannot flush the mapping");
  return NULL;
}

/*
 * releaseOwned(handle, buffer): detach the ArrayBuffer (every view of it
 * becomes empty, so JS can no longer reach the pages) and unmap now, instead
 * of whenever the GC gets to it.
 */
static napi_value ReleaseOwned(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv)) return NULL;
  mapping_t *m = get_mapping(env, argv[0], 0);
  if (m == NULL) return NULL;
  if (m->unmapped) return NULL;
  void *data = NULL;
  size_t len = 0;
  bool is_ab = false;
  CHECK(napi_is_arraybuffer(env, argv[1], &is_ab));
  if (!is_ab) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "expected the mapping's ArrayBuffer");
  bool detached = false;
  CHECK(napi_is_detached_arraybuffer(env, argv[1], &detached));
  /* Detached by someone else: the pages may live on in another ArrayBuffer; leave them to the finalizer. */
  if (detached) return NULL;
  CHECK(napi_get_arraybuffer_info(env, argv[1], &data, &len));
  if (data != m->addr || len != m->len)
    return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "the ArrayBuffer is not this mapping's");
  /* Mark first: detaching may release the backing store and run the
   * finalizer, which must not unmap too (the range could be reused by then). */
  m->unmapped = 1;
  if (napi_detach_arraybuffer(env, argv[1]) != napi_ok) {
    m->unmapped = 0; /* still reachable from JS: keep it mapped */
    return throw_err(env, "ERR_TE_SHM_NAPI", 0, NULL, "cannot detach the mapping's ArrayBuffer");
  }
  munmap(m->addr, m->len);
  return NULL;
}

/*
 * openPeer(path, expectedSize, writable) -> handle
 * The size is checked with fstat against what the peer's descriptor says
 * before mapping: mapping more than the file holds would fault on touch.
 * The file must also be a regular file owned by our uid (nobody else's
 * planted file) and still linked.
 */
static napi_value OpenPeer(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[4096];
  size_t expected;
  bool writable;
  if (get_args(env, info, 3, argv) || get_path(env, argv[0], path, sizeof path) ||
      get_size(env, argv[1], &expected, "expectedSize") || get_bool(env, argv[2], &writable))
    return NULL;
  if (expected == 0) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "expectedSize must be positive");

  int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    /* ELOOP: a symlink (O_NOFOLLOW); EISDIR: a directory. Neither is a region. */
    const char *code = e == ENOENT ? "ERR_TE_SHM_MISSING" : (e == ELOOP || e == EISDIR) ? "ERR_TE_SHM_FOREIGN" : "ERR_TE_SHM_OS";
    return throw_err(env, code, e, "open", path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "fstat", path);
  }
  char msg[600];
  if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    snprintf(msg, sizeof msg, "%s is not a regular file owned by this user", path);
    return throw_err(env, "ERR_TE_SHM_FOREIGN", 0, NULL, msg);
  }
  if (st.st_nlink == 0) {
    close(fd);
    snprintf(msg, sizeof msg, "%s was removed by its owner", path);
    return throw_err(env, "ERR_TE_SHM_MISSING", 0, NULL, msg);
  }
  if ((uint64_t)st.st_size != (uint64_t)expected) {
    close(fd);
    snprintf(msg, sizeof msg, "%s holds %lld bytes but the descriptor says %llu", path, (long long)st.st_size,
             (unsigned long long)expected);
    return throw_err(env, "ERR_TE_SHM_SIZE", 0, NULL, msg);
  }
  void *addr = mmap(NULL, expected, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | MAP_POPULATE, fd, 0);
  if (addr == MAP_FAILED) {
    int e = errno;
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", e, "mmap", path);
  }
  mapping_t *m = calloc(1, sizeof *m);
  if (m == NULL) {
    munmap(addr, expected);
    close(fd);
    return throw_err(env, "ERR_TE_SHM_OS", ENOMEM, "calloc", path);
  }
  m->addr = addr;
  m->len = expected;
  m->fd = fd;
  m->refs = 1;
  m->peer = 1;
  m->writable = writable;
  int adopted;
  napi_value h = make_handle(env, m, &adopted);
  if (h == NULL) {
    if (!adopted) mapping_unref(m);
    return throw_err(env, "ERR_TE_SHM_NAPI", 0, NULL, "cannot create a mapping handle");
  }
  return h;
}

/* Flags for peerCopy. */
#define COPY_SKIP_STAT 1 /* tests only: reach the SIGBUS guard without the fstat pre-check */

/*
 * peerCopy(handle, offset, view, write, flags)
 * write=true copies view -> peer[offset..], false peer[offset..] -> view.
 * Before the copy, fstat on the kept fd: a peer that removed its file (freed
 * the region, or was reaped) or shrank it gets a clear error instead of a
 * stale or faulting copy. The copy itself is SIGBUS-guarded for the race in
 * between.
 */
static napi_value PeerCopy(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t offset;
  bool write;
  uint32_t flags = 0;
  if (get_args(env, info, 5, argv)) return NULL;
  mapping_t *m = get_mapping(env, argv[0], 1);
  if (m == NULL) return NULL;
  if (get_size(env, argv[1], &offset, "offset") || get_bool(env, argv[3], &write)) return NULL;
  if (napi_get_value_uint32(env, argv[4], &flags) != napi_ok) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "flags must be a number");

  bool is_ta = false;
  CHECK(napi_is_typedarray(env, argv[2], &is_ta));
  if (!is_ta) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "view must be a Uint8Array");
  napi_typedarray_type type;
  size_t count = 0, byte_offset = 0;
  void *data = NULL;
  napi_value ab;
  CHECK(napi_get_typedarray_info(env, argv[2], &type, &count, &data, &ab, &byte_offset));
  if (type != napi_uint8_array) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "view must be a Uint8Array");

  if (m->unmapped) return throw_err(env, "ERR_TE_SHM_CLOSED", 0, NULL, "the peer mapping was closed");
  if (write && !m->writable) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "the peer mapping is read-only");
  if (offset > m->len || count > m->len - offset) {
    char msg[200];
    snprintf(msg, sizeof msg, "range [%zu, +%zu) is outside the %zu-byte mapping", offset, count, m->len);
    return throw_err(env, "ERR_TE_SHM_RANGE", 0, NULL, msg);
  }
  if (count == 0) return NULL;
  if (!(flags & COPY_SKIP_STAT)) {
    struct stat st;
    if (fstat(m->fd, &st) != 0) return throw_err(env, "ERR_TE_SHM_OS", errno, "fstat", "peer mapping");
    if (st.st_nlink == 0) return throw_err(env, "ERR_TE_SHM_MISSING", 0, NULL, "the peer removed its shared-memory file");
    if ((uint64_t)st.st_size < (uint64_t)(offset + count)) {
      char msg[200];
      snprintf(msg, sizeof msg, "the peer's file shrank to %lld bytes (mapped %zu)", (long long)st.st_size, m->len);
      return throw_err(env, "ERR_TE_SHM_TRUNCATED", 0, NULL, msg);
    }
  }
  char *peer = (char *)m->addr + offset;
  int r = write ? guarded_copy(peer, data, count) : guarded_copy(data, peer, count);
  if (r != 0) return throw_err(env, "ERR_TE_SHM_TRUNCATED", 0, NULL, "SIGBUS while copying: the peer's file was truncated under the mapping");
  return NULL;
}

/* closePeer(handle): unmap and close now (JS never saw the pages, so this is safe at any time). */
static napi_value ClosePeer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  mapping_t *m = get_mapping(env, argv[0], 1);
  if (m == NULL) return NULL;
  if (!m->unmapped) {
    munmap(m->addr, m->len);
    m->unmapped = 1;
    close(m->fd);
    m->fd = -1;
  }
  return NULL;
}

/*
 * tryLockExclusive(path) -> fd, or -1 when someone holds a lock on it (its
 * owner is alive). The reaper unlinks while holding the returned fd.
 */
static napi_value TryLockExclusive(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  char path[4096];
  if (get_args(env, info, 1, argv) || get_path(env, argv[0], path, sizeof path)) return NULL;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return throw_err(env, errno == ENOENT ? "ERR_TE_SHM_MISSING" : "ERR_TE_SHM_OS", errno, "open", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e != EWOULDBLOCK) return throw_err(env, "ERR_TE_SHM_OS", e, "flock", path);
    fd = -1;
  }
  CHECK(napi_create_int32(env, fd, &out));
  return out;
}

static void finalize_aligned(napi_env env, void *data, void *hint) {
  (void)hint;
  size_t len = (size_t)(uintptr_t)hint;
  free(data);
  int64_t adjusted;
  napi_adjust_external_memory(env, -(int64_t)len, &adjusted);
}

/* allocAligned(size, alignment) -> ArrayBuffer, zero-filled (O_DIRECT needs aligned memory). */
static napi_value AllocAligned(napi_env env, napi_callback_info info) {
  napi_value argv[2], ab;
  size_t size, alignment;
  if (get_args(env, info, 2, argv) || get_size(env, argv[0], &size, "size") ||
      get_size(env, argv[1], &alignment, "alignment"))
    return NULL;
  if (size == 0) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "size must be positive");
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0 || alignment > (1u << 30))
    return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "alignment must be a power of two between 8 and 2^30");
  void *p = NULL;
  int e = posix_memalign(&p, alignment, size);
  if (e != 0) return throw_err(env, "ERR_TE_SHM_OS", e, "posix_memalign", "aligned allocation");
  memset(p, 0, size); /* never show JS stale heap contents */
  if (napi_create_external_arraybuffer(env, p, size, finalize_aligned, (void *)(uintptr_t)size, &ab) != napi_ok) {
    free(p);
    return throw_err(env, "ERR_TE_SHM_NAPI", 0, NULL, "cannot create an external ArrayBuffer");
  }
  int64_t adjusted;
  napi_adjust_external_memory(env, (int64_t)size, &adjusted); /* so the GC feels the allocation */
  return ab;
}

/* addressModulo(view, m): the view's start address mod m (tests check alignment with it). */
static napi_value AddressModulo(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  size_t mod;
  void *data = NULL;
  if (get_args(env, info, 2, argv) || get_size(env, argv[1], &mod, "modulus")) return NULL;
  if (mod == 0) return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "modulus must be positive");
  bool is_ab = false, is_ta = false;
  CHECK(napi_is_arraybuffer(env, argv[0], &is_ab));
  CHECK(napi_is_typedarray(env, argv[0], &is_ta));
  if (is_ab) {
    size_t len;
    CHECK(napi_get_arraybuffer_info(env, argv[0], &data, &len));
  } else if (is_ta) {
    napi_typedarray_type t;
    size_t n, off;
    napi_value ab;
    CHECK(napi_get_typedarray_info(env, argv[0], &t, &n, &data, &ab, &off));
  } else {
    return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "expected an ArrayBuffer or a typed array");
  }
  CHECK(napi_create_double(env, (double)((uintptr_t)data % mod), &out));
  return out;
}

/* libuv's, exported by the node binary to addons; declared here so the addon needs only the Node-API headers. */
struct uv_loop_s;
extern int uv_backend_fd(const struct uv_loop_s *loop);

static double monotonic_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/*
 * pollWait(us): spin until the event loop has something to do (its epoll fd
 * is readable) or `us` microseconds pass; true if it has. Between checks the
 * thread yields, so a thread of another process waiting for this CPU runs at
 * once instead of after our time slice. A busy-polling server calls it from
 * setImmediate instead of turning the loop empty: no JS object per turn.
 */
static napi_value PollWait(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  double us;
  struct uv_loop_s *loop = NULL;
  if (get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_double(env, argv[0], &us) != napi_ok || !(us >= 0) || us > 1e6)
    return throw_err(env, "ERR_TE_SHM_ARGS", 0, NULL, "pollWait: microseconds must be 0 to 1e6");
  CHECK(napi_get_uv_event_loop(env, &loop));
  struct pollfd p = {.fd = uv_backend_fd(loop), .events = POLLIN, .revents = 0};
  const double deadline = monotonic_us() + us;
  bool ready = false;
  for (;;) {
    int r = poll(&p, 1, 0);
    if (r > 0 || (r < 0 && errno != EINTR)) {
      ready = r > 0;
      break;
    }
    if (monotonic_us() >= deadline) break;
    sched_yield();
  }
  CHECK(napi_get_boolean(env, ready, &out));
  return out;
}

/* sigbusGuardInstalled(): our handler is the process's SIGBUS handler. */
static napi_value SigbusGuardInstalled(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_get_boolean(env, sigbus_guard_active(), &out));
  return out;
}

NAPI_MODULE_INIT() {
  pthread_once(&g_install_once, install_sigbus);
  if (g_install_errno != 0) {
    throw_err(env, "ERR_TE_SHM_OS", g_install_errno, "sigaction", "cannot install the SIGBUS guard");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"createShm", NULL, CreateShm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"releaseOwned", NULL, ReleaseOwned, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openPeer", NULL, OpenPeer, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCopy", NULL, PeerCopy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closePeer", NULL, ClosePeer, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tryLockExclusive", NULL, TryLockExclusive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"allocAligned", NULL, AllocAligned, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addressModulo", NULL, AddressModulo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sigbusGuardInstalled", NULL, SigbusGuardInstalled, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapFile", NULL, MapFile, NULL, NULL, NULL, napi_enumerable, NULL},
      {"syncMapping", NULL, SyncMapping, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollWait", NULL, PollWait, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
