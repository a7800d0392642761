// Reads FUSE requests from /dev/fuse on the JavaScript thread (src/fuse/kernel/device.ts).
//
// Why this exists: fuse-native runs libfuse's loop on its own threads and hands every request
// to JavaScript and back (uv_async_send, then a semaphore): two extra thread wake-ups per
// request, which is most of its ~110-150 us per request here. Polling the device from Node's
// own event loop costs none: the kernel wakes the JS thread, the request is read and, when the
// answer is at hand (a cache hit), written back in the same turn. Node has no way to poll an
// arbitrary fd, hence these few lines; everything else (the protocol) is TypeScript.
//
//   const h = start(fd, buffer, onRequest, onEnd, spinMicros, pending)
//     fd:        the connection (/dev/fuse), made non-blocking here
//     buffer:    each request is read into it; valid only during onRequest
//     onRequest: (length) => void, called once per request, in order
//     onEnd:     (errno) => void, once, when the connection ends (ENODEV: unmounted)
//     spinMicros: how long to keep reading after the last request before sleeping (0: never)
//     pending:   Int32Array; [0] is the number of requests not yet answered (kept by the caller)
//   stop(h)      stop reading (the fd stays open: the caller closes it)
//   readCached(fd, buffer, position, dev)  file data from the page cache, never waiting (D34; below)
//   copyRange(from, to, length, done, stop)  file data copied between fds in libuv's pool, holes kept (D40, D48, D68; below)
//   spliceRead(dev, unique, fd, position, length, done)  a READ answered from a file through a pipe (D56; below)
//   lstat(path, out), fstat(fd, out)  a stat into a Float64Array, on the calling thread (D43; below)
//   fallocate(fd, mode, offset, length, done)  fallocate(2) in libuv's pool (D67; below)
//   lseek(fd, offset, whence)  lseek(2) for SEEK_DATA / SEEK_HOLE, on the calling thread (D67; below)
//
// Spinning (DECISIONS D32): a program that works through a mount sends its next request a few
// microseconds after it gets its answer. Going to sleep in epoll in between makes the kernel
// wake this thread for that request, and on a VM that wake-up (an idle vCPU to resume) costs more
// than answering. So after a burst the device is read again for up to spinMicros before the loop
// sleeps, but only while requests have been coming that quickly: when the last sleep was longer
// than the spin would have been, the next burst ends in sleep at once. Idle and sparse mounts
// never spin. Nor does it spin while a request is still being answered: what comes next is then
// most likely that answer (a read done in libuv's pool), which only the loop can deliver. Nor
// after a READ (D53): the program then works on the data it got before it asks again (`cat`
// writes it out, frees its buffer and opens the next file), and a spin while it does slowed
// it down more than a wake-up costs.
#define _GNU_SOURCE // preadv2, RWF_NOWAIT
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h> // FUSE_READ
#include <linux/magic.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref on_request;
  napi_ref on_end;
  napi_ref buffer;
  napi_ref pending_ref;
  const int32_t *pending;
  void *data;
  size_t size;
  int fd;
  int stopped;
  int64_t spin_ns;
  // When the loop last went to sleep (0: never), and whether the sleep before it was short
  // enough that spinning would have caught the next request.
  int64_t slept_at;
  int quick;
  // The opcode of the last request read: after a READ the loop sleeps at once (D53).
  uint32_t last_opcode;
} reader_t;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// Read the next request, spinning up to r->spin_ns for one to come. EAGAIN when none came.
static ssize_t read_spinning(reader_t *r) {
  int64_t until = now_ns() + r->spin_ns;
  for (;;) {
    ssize_t n = read(r->fd, r->data, r->size);
    if (n >= 0 || errno != EAGAIN || now_ns() > until) return n;
  }
}

static void on_closed(uv_handle_t *h) {
  reader_t *r = (reader_t *)h->data;
  napi_delete_reference(r->env, r->on_request);
  napi_delete_reference(r->env, r->on_end);
  napi_delete_reference(r->env, r->buffer);
  napi_delete_reference(r->env, r->pending_ref);
  // r itself is kept (a few bytes per session): the JS handle may still be passed to stop().
}

static void stop_reader(reader_t *r) {
  if (r->stopped) return;
  r->stopped = 1;
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, on_closed);
}

static void call(reader_t *r, napi_ref fn_ref, int value) {
  napi_value fn, recv, arg, result;
  napi_get_reference_value(r->env, fn_ref, &fn);
  napi_get_global(r->env, &recv); // make_callback needs an object as `this`
  napi_create_int32(r->env, value, &arg);
  // make_callback: microtasks (promise continuations of earlier requests) run after each call.
  if (napi_make_callback(r->env, NULL, recv, fn, 1, &arg, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(r->env, &e);
    napi_fatal_exception(r->env, e);
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  reader_t *r = (reader_t *)h->data;
  napi_handle_scope scope;
  napi_open_handle_scope(r->env, &scope);
  if (status < 0) {
    // libuv reports the device's POLLERR (the connection is gone) as UV_EBADF: a read tells
    // the real reason (ENODEV once unmounted).
    int e = -status;
    if (read(r->fd, r->data, r->size) < 0) e = errno;
    stop_reader(r);
    call(r, r->on_end, e);
  } else {
    if (r->spin_ns > 0 && r->slept_at != 0) r->quick = now_ns() - r->slept_at <= r->spin_ns;
    // A burst is read in one go, but not forever: other handles of the loop get their turn.
    for (int i = 0; i < 128 && !r->stopped; i++) {
      ssize_t n = read(r->fd, r->data, r->size);
      int may_spin = r->quick && *r->pending == 0 && r->last_opcode != FUSE_READ;
      if (n < 0 && errno == EAGAIN && may_spin) n = read_spinning(r);
      if (n >= 0) {
        // (struct fuse_in_header: the length, then the opcode.)
        r->last_opcode = 0;
        if (n >= 8) memcpy(&r->last_opcode, (const char *)r->data + 4, sizeof r->last_opcode);
        call(r, r->on_request, (int)n);
        continue;
      }
      int e = errno;
      if (e == EAGAIN) {
        // (A spin that ran out is a sleep longer than the spin: no spinning next time. A sleep
        // after a READ is not: the next request may well come quickly.)
        if (r->spin_ns > 0) r->slept_at = now_ns() - (r->quick && r->last_opcode != FUSE_READ ? r->spin_ns : 0);
        break;
      }
      // EINTR; ENOENT: the request was interrupted and withdrawn before it was read.
      if (e == EINTR || e == ENOENT) continue;
      stop_reader(r);
      call(r, r->on_end, e);
      break;
    }
  }
  napi_close_handle_scope(r->env, scope);
}

#define CHECK(call_)                                                  \
  if ((call_) != napi_ok) {                                           \
    napi_throw_error(env, NULL, "fuse_dev: bad arguments: " #call_); \
    return NULL;                                                      \
  }

// The call's n arguments, the first an fd and the second a Buffer; 0 (with an error thrown that
// shows `usage`) when they are not.
static int fd_and_buffer(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage,
                         int32_t *fd, void **data, size_t *size) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != n ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok || napi_get_buffer_info(env, argv[1], data, size) != napi_ok) {
    napi_throw_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

static napi_value start(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int32_t fd;
  void *data;
  size_t size;
  if (!fd_and_buffer(env, info, 6, argv, "fuse_dev.start(fd, buffer, onRequest, onEnd, spinMicros, pending)", &fd, &data, &size)) {
    return NULL;
  }
  int64_t spin_us;
  CHECK(napi_get_value_int64(env, argv[4], &spin_us));
  napi_typedarray_type pending_type;
  size_t pending_length;
  void *pending;
  CHECK(napi_get_typedarray_info(env, argv[5], &pending_type, &pending_length, &pending, NULL, NULL));
  if (pending_type != napi_int32_array || pending_length < 1) {
    napi_throw_error(env, NULL, "fuse_dev: pending must be an Int32Array");
    return NULL;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    napi_throw_error(env, NULL, "fuse_dev: fcntl failed on the connection fd");
    return NULL;
  }
  reader_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    napi_throw_error(env, NULL, "fuse_dev: out of memory");
    return NULL;
  }
  r->env = env;
  r->fd = fd;
  r->data = data;
  r->size = size;
  r->spin_ns = spin_us > 0 ? spin_us * 1000 : 0;
  r->pending = (const int32_t *)pending;
  napi_create_reference(env, argv[5], 1, &r->pending_ref);
  napi_create_reference(env, argv[1], 1, &r->buffer);
  napi_create_reference(env, argv[2], 1, &r->on_request);
  napi_create_reference(env, argv[3], 1, &r->on_end);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int err = uv_poll_init(loop, &r->poll, fd);
  if (err == 0) {
    r->poll.data = r;
    err = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  }
  if (err != 0) {
    napi_delete_reference(env, r->buffer);
    napi_delete_reference(env, r->on_request);
    napi_delete_reference(env, r->on_end);
    napi_delete_reference(env, r->pending_ref);
    free(r);
    napi_throw_error(env, NULL, uv_strerror(err));
    return NULL;
  }
  napi_value handle;
  napi_create_external(env, r, NULL, NULL, &handle);
  return handle;
}

static napi_value stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *r;
  CHECK(napi_get_value_external(env, argv[0], &r));
  stop_reader((reader_t *)r);
  return NULL;
}

// readCached(fd, buffer, position, dev): read into buffer (all of it, a Buffer or a view of one)
// from the page cache only (preadv2 RWF_NOWAIT), on the calling thread. Bytes read (fewer than
// asked: at the end of the file, or only so much was cached), or -errno: -EAGAIN when nothing
// asked for is cached, -EOPNOTSUPP where the filesystem cannot tell. The caller then reads the
// rest on a thread that may wait for the disk (src/host/fs.ts). tmpfs and ramfs cannot tell
// (Linux 6.18), but their files are memory: those are read as they are. `dev`: the file's st_dev
// where the caller knows it (else -1). A device found to be such a filesystem is remembered, and
// its files are then read at once, without the refused preadv2 and the fstatfs (two syscalls of
// three).
#define MEMORY_DEVS 16
static int64_t memory_devs[MEMORY_DEVS];
static unsigned memory_devs_next;

static int is_memory_dev(int64_t dev) {
  if (dev <= 0) return 0;
  for (unsigned i = 0; i < MEMORY_DEVS; i++) {
    if (memory_devs[i] == dev) return 1;
  }
  return 0;
}

static napi_value read_cached(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  void *data;
  size_t size;
  if (!fd_and_buffer(env, info, 4, argv, "fuse_dev.readCached(fd, buffer, position, dev)", &fd, &data, &size)) return NULL;
  int64_t pos;
  CHECK(napi_get_value_int64(env, argv[2], &pos));
  int64_t dev;
  CHECK(napi_get_value_int64(env, argv[3], &dev));
  ssize_t n;
  if (is_memory_dev(dev)) {
    n = pread(fd, data, size, pos);
  } else {
    struct iovec iov = {.iov_base = data, .iov_len = size};
    n = preadv2(fd, &iov, 1, pos, RWF_NOWAIT);
    if (n < 0 && errno == EOPNOTSUPP) {
      struct statfs fs;
      if (fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)) {
        if (dev > 0) memory_devs[memory_devs_next++ % MEMORY_DEVS] = dev;
        n = pread(fd, data, size, pos);
      } else {
        errno = EOPNOTSUPP;
      }
    }
  }
  napi_value out;
  napi_create_int64(env, n < 0 ? -(int64_t)errno : (int64_t)n, &out);
  return out;
}

// copyRange(from, to, length, done): copy the first `length` bytes of fd `from` (all of it, if
// shorter) to fd `to`, a new empty file, inside the kernel, on a thread of libuv's pool (a large
// file may have to come from disk); done(the copy's size), or done(-errno) on an error. Node
// copies files only by path (libuv's copyfile opens the source itself), and layerfs must read a
// lower file through an fd it opened with O_NOATIME (D40). copy_file_range makes a
// reflink where the filesystem can; between filesystems that cannot copy to each other it fails
// and sendfile copies instead. Holes are not copied (D68): the copy goes from each stretch of
// data to the next (lseek SEEK_DATA / SEEK_HOLE), and the size is set at the end, so a sparse
// file stays sparse, as a copy-up on the kernel's overlayfs keeps it (a 1 GiB file of a few
// blocks, such as /var/log/lastlog after a useradd of a large uid, is not 1 GiB in the upper).
// copyRange(from, to, length, done, stop): `stop`, an Int32Array, ends the copy early when its [0]
// is set (done(-ECANCELED)): the copy goes in chunks of COPY_CHUNK and looks between them, so a
// copy-up whose callers were all killed stops within one chunk (as the kernel's overlayfs stops
// a copy-up on a fatal signal) instead of running to the end of a file of many GiB.
#define COPY_CHUNK (64 << 20)
// What every job of libuv's pool below starts with: its work, the callback, and the result the
// callback gets (bytes, or -errno). job_complete ends such a job whose memory is one block.
typedef struct {
  napi_async_work work;
  napi_ref done;
  int64_t result;
} job_t;

typedef struct {
  job_t job; // first: job_complete frees it
  napi_ref stop_ref; // keeps `stop` alive while the copy runs (NULL: none given)
  const volatile int32_t *stop;
  int from;
  int to;
  int64_t length;
} copy_t;

static void copy_execute(napi_env env, void *data) {
  (void)env;
  copy_t *c = data;
  struct stat st;
  if (fstat(c->from, &st) != 0) {
    c->job.result = -(int64_t)errno;
    return;
  }
  int64_t end = c->length < (int64_t)st.st_size ? c->length : (int64_t)st.st_size;
  int64_t pos = 0;
  int seek = 1;
  int via_sendfile = 0;
  while (pos < end) {
    // The next stretch of data: holes are skipped, not copied (D68).
    int64_t stretch_end = end;
    if (seek) {
      off_t d = lseek(c->from, (off_t)pos, SEEK_DATA);
      if (d < 0 && errno == ENXIO) break; // a hole to the end
      if (d < 0) {
        seek = 0; // the source cannot tell: everything is copied
      } else {
        if (d >= end) break;
        pos = d;
        off_t h = lseek(c->from, (off_t)pos, SEEK_HOLE);
        if (h > pos && h < end) stretch_end = h;
      }
    }
    while (pos < stretch_end) {
      if (c->stop != NULL && __atomic_load_n(c->stop, __ATOMIC_RELAXED) != 0) {
        c->job.result = -ECANCELED;
        return;
      }
      size_t chunk = (size_t)(stretch_end - pos < COPY_CHUNK ? stretch_end - pos : COPY_CHUNK);
      ssize_t n;
      if (via_sendfile) {
        off_t in = (off_t)pos;
        n = lseek(c->to, (off_t)pos, SEEK_SET) < 0 ? -1 : sendfile(c->to, c->from, &in, chunk);
      } else {
        loff_t in = pos, out = pos;
        n = copy_file_range(c->from, &in, c->to, &out, chunk, 0);
      }
      if (n > 0) {
        pos += n;
        continue;
      }
      if (n == 0) { // the source ended before its size said (it changed underneath)
        end = pos;
        break;
      }
      if (errno == EINTR) continue;
      if (!via_sendfile && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
        via_sendfile = 1;
        continue;
      }
      c->job.result = -(int64_t)errno;
      return;
    }
  }
  // What ends in a hole gets its size without a byte written.
  if (ftruncate(c->to, (off_t)end) != 0) {
    c->job.result = -(int64_t)errno;
    return;
  }
  c->job.result = end;
}

// The end of a job of libuv's pool, on the JS thread: done(result) is called, and its reference
// dropped. The caller has freed the job by then, so that nothing done may do can reach it.
static void call_done(napi_env env, napi_ref done_ref, int64_t result) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value done, global, arg;
  napi_get_reference_value(env, done_ref, &done);
  napi_get_global(env, &global);
  napi_create_int64(env, result, &arg);
  napi_delete_reference(env, done_ref);
  napi_call_function(env, global, done, 1, &arg, NULL);
  napi_close_handle_scope(env, scope);
}

// Queue a job on libuv's pool; 0 where N-API would not (nothing is then queued).
static int queue_job(napi_env env, const char *name, napi_async_execute_callback execute, napi_async_complete_callback complete,
                     void *data, napi_async_work *work) {
  napi_value n;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &n) != napi_ok ||
      napi_create_async_work(env, NULL, n, execute, complete, data, work) != napi_ok) {
    return 0;
  }
  if (napi_queue_async_work(env, *work) != napi_ok) {
    napi_delete_async_work(env, *work);
    return 0;
  }
  return 1;
}

static void job_complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_ref done = j->done;
  int64_t result = status == napi_ok ? j->result : -(int64_t)ECANCELED;
  napi_delete_async_work(env, j->work);
  free(j);
  call_done(env, done, result);
}

// Queue job j, its callback referenced, to end in job_complete; where it cannot be queued, drop
// the reference, free it and throw `failure`.
static napi_value queue_or_throw(napi_env env, const char *name, napi_async_execute_callback execute, job_t *j, const char *failure) {
  if (!queue_job(env, name, execute, job_complete, j, &j->work)) {
    napi_delete_reference(env, j->done);
    free(j);
    napi_throw_error(env, NULL, failure);
  }
  return NULL;
}

static void copy_complete(napi_env env, napi_status status, void *data) {
  copy_t *c = data;
  if (c->stop_ref != NULL) napi_delete_reference(env, c->stop_ref);
  job_complete(env, status, data);
}

static napi_value copy_range(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_error(env, NULL, "fuse_dev.copyRange(from, to, length, done[, stop])");
    return NULL;
  }
  copy_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[0], &c->from) != napi_ok || napi_get_value_int32(env, argv[1], &c->to) != napi_ok ||
      napi_get_value_int64(env, argv[2], &c->length) != napi_ok || napi_create_reference(env, argv[3], 1, &c->job.done) != napi_ok) {
    free(c);
    napi_throw_error(env, NULL, "fuse_dev.copyRange(from, to, length, done): numbers and a function");
    return NULL;
  }
  napi_valuetype stop_type = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &stop_type);
  if (stop_type != napi_undefined) {
    napi_typedarray_type t;
    size_t len;
    void *data;
    if (napi_get_typedarray_info(env, argv[4], &t, &len, &data, NULL, NULL) != napi_ok || t != napi_int32_array || len < 1 ||
        napi_create_reference(env, argv[4], 1, &c->stop_ref) != napi_ok) {
      napi_delete_reference(env, c->job.done);
      free(c);
      napi_throw_error(env, NULL, "fuse_dev.copyRange: stop must be an Int32Array");
      return NULL;
    }
    c->stop = (const volatile int32_t *)data;
  }
  if (!queue_job(env, "layerfs.copyRange", copy_execute, copy_complete, c, &c->job.work)) {
    napi_delete_reference(env, c->job.done);
    if (c->stop_ref != NULL) napi_delete_reference(env, c->stop_ref);
    free(c);
    napi_throw_error(env, NULL, "fuse_dev.copyRange: cannot queue the copy");
    return NULL;
  }
  return NULL;
}

// lstat(path, out): lstat(2) of a path into out, a Float64Array of LSTAT_FIELDS: dev, ino, mode,
// nlink, uid, gid, rdev, size, blksize, blocks, then atime, mtime and ctime each as seconds and
// nanoseconds (exact: doubles hold integers to 2^53). Returns 0, or the errno. Measured (D43): 3.3
// us a call where Node's lstatSync takes 5 (the syscall is most of both), 5 to 6.6 where it takes
// 10 to 12 while the server's code is still cold; and a bigint lstatSync makes 17 BigInts for the
// exact times. A lookup that misses the resolver's cache makes one.
// A path over PATH_MAX (the caller walks those itself) or with a NUL inside: ENAMETOOLONG, EINVAL.
#define LSTAT_FIELDS 16

// The fields of st into out (LSTAT_FIELDS doubles).
static void put_stat(double *f, const struct stat *st) {
  f[0] = (double)st->st_dev;
  f[1] = (double)st->st_ino;
  f[2] = st->st_mode;
  f[3] = (double)st->st_nlink;
  f[4] = st->st_uid;
  f[5] = st->st_gid;
  f[6] = (double)st->st_rdev;
  f[7] = (double)st->st_size;
  f[8] = (double)st->st_blksize;
  f[9] = (double)st->st_blocks;
  f[10] = (double)st->st_atim.tv_sec;
  f[11] = (double)st->st_atim.tv_nsec;
  f[12] = (double)st->st_mtim.tv_sec;
  f[13] = (double)st->st_mtim.tv_nsec;
  f[14] = (double)st->st_ctim.tv_sec;
  f[15] = (double)st->st_ctim.tv_nsec;
}

// The Float64Array out (second argument) with room for LSTAT_FIELDS, or NULL with an error thrown.
static double *stat_out(napi_env env, napi_value v, const char *usage) {
  napi_typedarray_type type;
  size_t count;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &count, &data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      count < LSTAT_FIELDS) {
    napi_throw_error(env, NULL, usage);
    return NULL;
  }
  return (double *)data;
}

static napi_value lstat_into(napi_env env, napi_callback_info info) {
  static const char usage[] = "fuse_dev.lstat(path, out): a string and a Float64Array(16)";
  size_t argc = 2;
  napi_value argv[2];
  char path[PATH_MAX];
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_error(env, NULL, usage);
    return NULL;
  }
  double *f = stat_out(env, argv[1], usage);
  if (f == NULL) return NULL;
  int err = 0;
  struct stat st;
  if (len >= sizeof path - 1) {
    err = ENAMETOOLONG; // (cut to fit: the path may have been longer still)
  } else if (strlen(path) != len) {
    err = EINVAL;
  } else if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    err = errno;
  } else {
    put_stat(f, &st);
  }
  napi_value out;
  napi_create_int32(env, err, &out);
  return out;
}

// fstat(fd, out): as lstat, of an open file.
static napi_value fstat_into(napi_env env, napi_callback_info info) {
  static const char usage[] = "fuse_dev.fstat(fd, out): a number and a Float64Array(16)";
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_error(env, NULL, usage);
    return NULL;
  }
  double *f = stat_out(env, argv[1], usage);
  if (f == NULL) return NULL;
  struct stat st;
  int err = fstat(fd, &st) == 0 ? 0 : errno;
  if (err == 0) put_stat(f, &st);
  napi_value out;
  napi_create_int32(env, err, &out);
  return out;
}

// fallocate(fd, mode, offset, length, done): fallocate(2) on a thread of libuv's pool; done(0), or
// done(-errno). Node has no fallocate. In the pool, not on the JS thread: reserving space can
// take a while (tmpfs zeroes every page of the range), and the mount answers others meanwhile.
typedef struct {
  job_t job; // first: job_complete frees it
  int fd;
  int mode;
  int64_t offset;
  int64_t length;
} fallocate_t;

static void fallocate_execute(napi_env env, void *data) {
  (void)env;
  fallocate_t *f = data;
  int r;
  do r = fallocate(f->fd, f->mode, (off_t)f->offset, (off_t)f->length);
  while (r != 0 && errno == EINTR);
  f->job.result = r == 0 ? 0 : -(int64_t)errno;
}

static napi_value fallocate_async(napi_env env, napi_callback_info info) {
  static const char usage[] = "fuse_dev.fallocate(fd, mode, offset, length, done): four numbers and a function";
  size_t argc = 5;
  napi_value argv[5];
  fallocate_t *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 ||
      napi_get_value_int32(env, argv[0], &f->fd) != napi_ok || napi_get_value_int32(env, argv[1], &f->mode) != napi_ok ||
      napi_get_value_int64(env, argv[2], &f->offset) != napi_ok || napi_get_value_int64(env, argv[3], &f->length) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &f->job.done) != napi_ok) {
    free(f);
    napi_throw_error(env, NULL, usage);
    return NULL;
  }
  return queue_or_throw(env, "layerfs.fallocate", fallocate_execute, &f->job, "fuse_dev.fallocate: cannot queue the call");
}

// lseek(fd, offset, whence): the new offset, or -errno. For SEEK_DATA and SEEK_HOLE, which the
// kernel asks of a FUSE file (FUSE_LSEEK) so that sparse files keep their holes through the
// mount; Node has no lseek. A query of the file's extents: quick, on the calling thread.
static napi_value lseek_now(napi_env env, napi_callback_info info) {
  static const char usage[] = "fuse_dev.lseek(fd, offset, whence): three numbers";
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, whence;
  int64_t offset;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int32(env, argv[2], &whence) != napi_ok) {
    napi_throw_error(env, NULL, usage);
    return NULL;
  }
  off_t r = lseek(fd, (off_t)offset, whence);
  napi_value out;
  napi_create_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &out);
  return out;
}

// spliceRead(dev, unique, fd, position, length, done): answer the READ `unique` on connection
// `dev` with `length` bytes of fd at `position`, moved through a pipe on a thread of libuv's pool
// (D56). splice(2) puts references to the file's pages into the pipe, and the kernel copies them
// once, into the pages of the FUSE file. A read into a buffer and a write of it copy every byte
// twice, and the write pins the buffer's pages as it goes.
// The reply's header must precede the data in the pipe, and it states the length: the caller
// must know that the file holds `length` bytes there (a lower file, which cannot change).
// done(bytes sent), or done(-errno) with nothing sent: -EAGAIN where the file gave fewer bytes,
// -EMSGSIZE where this thread's pipe cannot hold the reply (the caller then reads the usual way);
// -ENOENT where the kernel no longer waits for the answer (the request was interrupted).
// No SPLICE_F_MOVE: the kernel would then take a clean page of the file out of its page cache
// for the FUSE file's, and whoever else reads that lower file (another mount of the same layer,
// the host) would read it from the disk again.
#define SPLICE_PIPE_BYTES (2 << 20)
// Each pool thread has a pipe of its own, made on its first spliced read and kept.
static __thread int splice_pipe[2] = {-1, -1};
static __thread int64_t splice_pipe_pages;

static void drop_splice_pipe(void) {
  if (splice_pipe[0] >= 0) close(splice_pipe[0]);
  if (splice_pipe[1] >= 0) close(splice_pipe[1]);
  splice_pipe[0] = splice_pipe[1] = -1;
}

typedef struct {
  job_t job; // first: job_complete frees it
  int dev;
  int fd;
  uint64_t unique;
  int64_t pos;
  int64_t length;
} splice_t;

static void splice_execute(napi_env env, void *data) {
  (void)env;
  splice_t *c = data;
  if (splice_pipe[0] < 0) {
    if (pipe2(splice_pipe, O_CLOEXEC) != 0) {
      c->job.result = -(int64_t)errno;
      splice_pipe[0] = splice_pipe[1] = -1;
      return;
    }
    // A pipe holds a page per slot. 2 MiB needs CAP_SYS_RESOURCE (or fs.pipe-max-size raised);
    // 1 MiB, the default bound, holds a header and 255 pages: the most layerfs asks the kernel
    // to read at once (src/server.ts, KERNEL_MAX_WRITE).
    int got = fcntl(splice_pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES);
    if (got < 0) got = fcntl(splice_pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES / 2);
    if (got < 0) got = fcntl(splice_pipe[1], F_GETPIPE_SZ);
    splice_pipe_pages = got > 0 ? got / 4096 : 0;
  }
  // The header's slot, and one for each page the data touches.
  if (1 + ((c->pos % 4096) + c->length + 4095) / 4096 > splice_pipe_pages) {
    c->job.result = -EMSGSIZE;
    return;
  }
  struct fuse_out_header h = {.len = (uint32_t)(sizeof h + (size_t)c->length), .error = 0, .unique = c->unique};
  if (write(splice_pipe[1], &h, sizeof h) != (ssize_t)sizeof h) {
    c->job.result = -(int64_t)errno;
    drop_splice_pipe();
    return;
  }
  loff_t off = c->pos;
  int64_t moved = 0;
  while (moved < c->length) {
    ssize_t n = splice(c->fd, &off, splice_pipe[1], NULL, (size_t)(c->length - moved), 0);
    if (n > 0) {
      moved += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  if (moved < c->length) {
    // The pipe holds a header that promises more than follows: it must never reach the device.
    drop_splice_pipe();
    c->job.result = -EAGAIN;
    return;
  }
  ssize_t sent = splice(splice_pipe[0], NULL, c->dev, NULL, sizeof h + (size_t)c->length, 0);
  if (sent != (ssize_t)(sizeof h + (size_t)c->length)) {
    c->job.result = sent < 0 ? -(int64_t)errno : -EIO;
    drop_splice_pipe(); // with whatever the device left in it
    return;
  }
  c->job.result = c->length;
}

static napi_value splice_read(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  splice_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  bool lossless;
  if (argc != 6 || napi_get_value_int32(env, argv[0], &c->dev) != napi_ok ||
      napi_get_value_bigint_uint64(env, argv[1], &c->unique, &lossless) != napi_ok ||
      napi_get_value_int32(env, argv[2], &c->fd) != napi_ok || napi_get_value_int64(env, argv[3], &c->pos) != napi_ok ||
      napi_get_value_int64(env, argv[4], &c->length) != napi_ok || c->length < 0 ||
      napi_create_reference(env, argv[5], 1, &c->job.done) != napi_ok) {
    free(c);
    napi_throw_error(env, NULL, "fuse_dev.spliceRead(dev, unique: bigint, fd, position, length, done)");
    return NULL;
  }
  return queue_or_throw(env, "layerfs.spliceRead", splice_execute, &c->job, "fuse_dev.spliceRead: cannot queue the read");
}

NAPI_MODULE_INIT() {
  // Each: its name and its function (utf8name, name, method, getter, setter, value, attributes,
  // data).
  static const napi_property_descriptor exported[] = {
      {"start", NULL, start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stop", NULL, stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readCached", NULL, read_cached, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spliceRead", NULL, splice_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyRange", NULL, copy_range, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lstat", NULL, lstat_into, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fstat", NULL, fstat_into, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fallocate", NULL, fallocate_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lseek", NULL, lseek_now, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof exported / sizeof exported[0], exported);
  return exports;
}
