/* kernelsdk.h: embed a Jupyter kernel in a C, C++ or Fortran program.
 *
 * Build a host with the flags of the Python environment that has kernelsdk installed:
 *
 *     cc host.c $(python -m kernelsdk config --cflags --ldflags) -o host
 *
 * The library starts a Python interpreter on first use (the one of that environment) and
 * serves the kernel from a thread of its own. The interpreter holds the GIL only while Python
 * runs: between two calls the host's C code runs in parallel with the kernel's thread.
 *
 * Conventions (docs/c-api.md is the reference):
 *   - A kernel is an integer handle (> 0), a request an integer id (> 0). Never a pointer.
 *   - Every function returning int returns >= 0 on success and a negative KSDK_E* code on
 *     failure; ksdk_last_error() then says what went wrong, in words, for the calling thread.
 *   - Strings are NUL-terminated UTF-8. The library copies what it keeps.
 *   - Misuse (NULL pointers, an unknown handle, a call in the wrong order, a request that has
 *     ended) is an error code, never a crash.
 */
#ifndef KERNELSDK_H
#define KERNELSDK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KSDK_API_VERSION 1

/* ---- error codes ------------------------------------------------------------------------ */
#define KSDK_OK 0
#define KSDK_EARG (-1)         /* a NULL pointer, an unknown option, a bad value */
#define KSDK_EHANDLE (-2)      /* no kernel has this handle */
#define KSDK_ESTATE (-3)       /* wrong order: option after start, poll before start, use after stop */
#define KSDK_EREQUEST (-4)     /* no such request, it has ended, or it is of the wrong kind */
#define KSDK_EPYTHON (-5)      /* the embedded Python failed (start-up, an import, a bug) */
#define KSDK_ESTART (-6)       /* the kernel could not start (a port taken, a bad connection file) */
#define KSDK_EINTERRUPTED (-7) /* ksdk_input: the request was interrupted while waiting */
#define KSDK_ESTDIN (-8)       /* ksdk_input: the frontend does not allow input, or sent end of input */
#define KSDK_ELIMIT (-9)       /* too many kernels created in this process */

/* ---- is_complete statuses (what an is_complete callback returns) ------------------------ */
#define KSDK_COMPLETE 0
#define KSDK_INCOMPLETE 1
#define KSDK_INVALID 2
#define KSDK_UNKNOWN 3

/* ---- callbacks of a "native" kernel ----------------------------------------------------- *
 * Each gets the request id (for the output functions below), the code as UTF-8, and the
 * user pointer given at registration. They run one at a time (never two at once for one
 * kernel): on a worker thread of the kernel, or on the host's thread inside ksdk_poll or
 * ksdk_serve when the option safe_points is on. */

/* Run a cell. Return 0 when it succeeded, anything else when it failed (call ksdk_error first
 * to say how; otherwise a generic error is reported). */
typedef int (*ksdk_execute_fn)(int req, const char *code, void *user);
/* Offer completions at byte offset cursor (ksdk_complete_match, ksdk_complete_range). */
typedef int (*ksdk_complete_fn)(int req, const char *code, int cursor, void *user);
/* Describe the object at byte offset cursor (ksdk_result adds to the reply's bundle). */
typedef int (*ksdk_inspect_fn)(int req, const char *code, int cursor, int detail_level, void *user);
/* Return KSDK_COMPLETE, KSDK_INCOMPLETE, KSDK_INVALID or KSDK_UNKNOWN (ksdk_set_indent). */
typedef int (*ksdk_is_complete_fn)(int req, const char *code, void *user);
/* Called on the kernel's thread when the frontend interrupts: set a flag the running cell
 * looks at, and return at once (ksdk_interrupted(req) says the same from the cell). */
typedef void (*ksdk_interrupt_fn)(void *user);

/* ---- kernels ------------------------------------------------------------------------------ */

/* A new kernel. name: [A-Za-z0-9._-]{1,64} (names the connection file and "Attach: NAME").
 * kind: "python" (cells are Python, host data exposed to them) or "native" (cells go to the
 * callbacks below). Returns a handle > 0, or an error code. */
int ksdk_create(const char *name, const char *kind);

/* Before ksdk_start. Keys: safe_points, allow_shutdown ("0"/"1"), connection_file (a path;
 * an existing file's ports and key are used, as a kernelspec's -f {connection_file}),
 * watch_parent ("1": stop when the frontend that launched the program dies; ksdk_serve then
 * returns and ksdk_shutdown_requested says 1), transport ("tcp"/"ipc"), ip, packer
 * ("json"/"msgpack"), and for native kernels implementation, implementation_version, language,
 * language_version, file_extension, mimetype, pygments_lexer, codemirror_mode, banner;
 * mpi ("0"/"1", python kind, see docs/embedding.md). */
int ksdk_set_option(int k, const char *key, const char *value);

int ksdk_on_execute(int k, ksdk_execute_fn fn, void *user);
int ksdk_on_complete(int k, ksdk_complete_fn fn, void *user);
int ksdk_on_inspect(int k, ksdk_inspect_fn fn, void *user);
int ksdk_on_is_complete(int k, ksdk_is_complete_fn fn, void *user);
int ksdk_on_interrupt(int k, ksdk_interrupt_fn fn, void *user);

/* Host data for a "python" kernel: cells see `name` as a NumPy array (a memoryview without
 * NumPy) over the host's memory, no copy. dtype: "float64", "float32", "int64", "int32",
 * "int16", "int8", "uint64", "uint32", "uint16", "uint8" (or the C names "double", "float",
 * "int", "long", "unsigned char"...). The memory must stay valid until ksdk_stop.
 * flags: KSDK_WRITABLE lets cells change it (`name[...] = v`, or for a scalar simply
 * `name = v`); KSDK_COLUMN_MAJOR says shape is in Fortran order (shape[0] varies fastest),
 * and NumPy then shows the array with that shape (without NumPy: the reversed shape). */
#define KSDK_WRITABLE 1
#define KSDK_COLUMN_MAJOR 2
int ksdk_expose_array(int k, const char *name, void *data, const char *dtype, int ndim,
                      const int64_t *shape, int flags);
int ksdk_expose_scalar(int k, const char *name, void *data, const char *dtype, int flags);

/* Bind the sockets, write the connection file and serve from the kernel's thread. Once. */
int ksdk_start(int k);

/* A safe point (option safe_points=1): run the cells waiting now, or arriving within timeout
 * seconds, on this thread. Returns how many ran. With nothing waiting and timeout <= 0 it
 * returns 0 without entering Python. */
int ksdk_poll(int k, double timeout);

/* Block this thread serving the kernel (cells run here with safe_points=1) until ksdk_stop
 * from another thread or a shutdown request (allowed with allow_shutdown=1). */
int ksdk_serve(int k);

/* 1 once a frontend asked to shut down and allow_shutdown is set, else 0. */
int ksdk_shutdown_requested(int k);

/* Stop serving, close the sockets, remove the connection file. The handle is then dead;
 * a second ksdk_stop is KSDK_ESTATE. */
int ksdk_stop(int k);

/* The connection file's path (valid until the process ends), or NULL on error. */
const char *ksdk_connection_file(int k);

/* ---- output and input of a request (only while its callback runs) ----------------------- */

/* name: "stdout" or "stderr". */
int ksdk_stream(int req, const char *name, const char *text);
/* A display_data output with one representation (binary ones such as image/png base64). */
int ksdk_display(int req, const char *mimetype, const char *data);
/* Add a representation to the cell's result (Out[n], publish text/plain at least) or, in an
 * inspect callback, to the reply. */
int ksdk_result(int req, const char *mimetype, const char *data);
/* The cell failed: its error output. traceback: lines separated by '\n', may be NULL. */
int ksdk_error(int req, const char *ename, const char *evalue, const char *traceback);
/* Ask the frontend for a line; copies at most buflen-1 bytes and a NUL into buf. Returns the
 * line's whole length (>= buflen: it was cut), or KSDK_EINTERRUPTED/KSDK_ESTDIN. */
int ksdk_input(int req, const char *prompt, int password, char *buf, int buflen);
/* 1 when the request was interrupted (a long cell looks at it now and then), else 0. */
int ksdk_interrupted(int req);
/* In a complete callback: one more match; the range of the code (byte offsets) the matches
 * replace (by default the run of non-blank characters before the cursor). */
int ksdk_complete_match(int req, const char *match);
int ksdk_complete_range(int req, int start, int end);
/* In an is_complete callback: the indent for the next line of an incomplete cell. */
int ksdk_set_indent(int req, const char *indent);

/* ---- errors ------------------------------------------------------------------------------- */

/* What went wrong in the last failed call on this thread ("" if none); valid until the next
 * call on this thread. */
const char *ksdk_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* KERNELSDK_H */
