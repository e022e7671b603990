/* The C side of libkernelsdk-embed: the functions of kernelsdk.h.
 *
 * This file is compiled as the source of a cffi module in embedding mode (_build.py prepends
 * the build's constants and cffi appends the glue). Each public function is a thin shell over
 * a static `extern "Python"` function of _bridge.py; what stays in C is what must not need
 * Python: the last error (a thread-local buffer), starting the interpreter of the environment
 * that built the library, and the fast path of ksdk_poll (two atomic flags per kernel, set
 * from Python, so a poll with nothing waiting takes neither the GIL nor a Python frame).
 *
 * With the mpi option the poll is collective: every rank takes part in one broadcast of the
 * number of the last cell rank 0 has claimed (kernelsdk/embed/_mpi.py). The fast path makes
 * that broadcast here, through the host's own MPI_Bcast (its address and the handles given by
 * Python from mpi4py), and enters Python only when a cell is to run: on rank 0 when one
 * waits, on the other ranks when the number has grown.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernelsdk.h"

#define KSDK_EXPORT __attribute__((visibility("default")))

/* Handles are never reused, so a stale handle cannot reach a newer kernel. */
#define KSDK_MAX_HANDLES 4096

/* What the fast path knows of a kernel (set from Python by _ksdk_set_state). */
#define KSDK_STATE_NONE 0    /* unknown, created, or stopped: ask Python */
#define KSDK_STATE_SERVING 1 /* started, safe points on: poll may answer from C */
#define KSDK_STATE_MPI 2     /* started, mpi: poll broadcasts from C (ksdk_mpi[k]) */

static atomic_int ksdk_state[KSDK_MAX_HANDLES];
static atomic_int ksdk_pending[KSDK_MAX_HANDLES];

/* The collective poll of an mpi kernel, as Python set it up (used by the host thread only).
 * MPI handles are ints in MPICH's ABI and pointers in Open MPI's and the standard ABI's: the
 * broadcast is called with the type of the library's handles. */
typedef int (*ksdk_bcast_int_fn)(void *, int, int, int, int);
typedef int (*ksdk_bcast_ptr_fn)(void *, int, void *, int, void *);
typedef struct {
    void *bcast;       /* the host's MPI_Bcast */
    intptr_t comm;     /* the poll's communicator */
    intptr_t datatype; /* MPI_INT64_T */
    int handle_size;   /* sizeof(MPI_Comm) == sizeof(MPI_Datatype) */
    int root;          /* this is rank 0 of comm */
    int64_t claimed;   /* the number of the last cell this rank claimed (kept by Python) */
} ksdk_mpi_poll;
static ksdk_mpi_poll ksdk_mpi[KSDK_MAX_HANDLES];

static _Thread_local char ksdk_error_buf[2048];

/* ---- called from Python (declared in the cdef) ---------------------------------------- */

static void _ksdk_set_error(const char *message) {
    snprintf(ksdk_error_buf, sizeof ksdk_error_buf, "%s", message ? message : "");
}

static void _ksdk_set_state(int k, int state) {
    if (k > 0 && k < KSDK_MAX_HANDLES) atomic_store_explicit(&ksdk_state[k], state, memory_order_release);
}

/* Something may be waiting for a safe point: the next poll goes to Python. Cleared by Python
 * before it polls, so a cell arriving during a poll sets it again. */
static void _ksdk_set_pending(int k, int pending) {
    if (k > 0 && k < KSDK_MAX_HANDLES) atomic_store_explicit(&ksdk_pending[k], pending, memory_order_release);
}

static int _ksdk_max_handles(void) { return KSDK_MAX_HANDLES; }

/* The collective poll's broadcast, from C; 0 if the handles have a size it cannot call with.
 * Called on the host thread, before the state says KSDK_STATE_MPI. */
static int _ksdk_set_mpi(int k, intptr_t bcast, intptr_t comm, intptr_t datatype, int handle_size,
                         int root) {
    if (k <= 0 || k >= KSDK_MAX_HANDLES || bcast == 0) return 0;
    if (handle_size != (int)sizeof(int) && handle_size != (int)sizeof(void *)) return 0;
    ksdk_mpi_poll *m = &ksdk_mpi[k];
    m->bcast = (void *)bcast;
    m->comm = comm;
    m->datatype = datatype;
    m->handle_size = handle_size;
    m->root = root;
    m->claimed = 0;
    return 1;
}

static void _ksdk_set_mpi_claimed(int k, int64_t claimed) {
    if (k > 0 && k < KSDK_MAX_HANDLES) ksdk_mpi[k].claimed = claimed;
}

static int ksdk_mpi_bcast(const ksdk_mpi_poll *m, int64_t *count) {
    if (m->handle_size == (int)sizeof(int))
        return ((ksdk_bcast_int_fn)m->bcast)(count, 1, (int)m->datatype, 0, (int)m->comm);
    return ((ksdk_bcast_ptr_fn)m->bcast)(count, 1, (void *)m->datatype, 0, (void *)m->comm);
}

/* ---- the Python side (defined by _bridge.py with @ffi.def_extern) ----------------------- */

static int _ksdk_py_ready(void);
static int _ksdk_py_create(const char *name, const char *kind);
static int _ksdk_py_set_option(int k, const char *key, const char *value);
static int _ksdk_py_on(int k, int which, ksdk_any_fn fn, void *user);
static int _ksdk_py_expose(int k, const char *name, void *data, const char *dtype, int ndim,
                           const int64_t *shape, int flags, int scalar);
static int _ksdk_py_lifecycle(int k, int what, double timeout);
static const char *_ksdk_py_connection_file(int k);
static int _ksdk_py_output(int req, int what, const char *a, const char *b, const char *c);
static int _ksdk_py_input(int req, const char *prompt, int password, char *buf, int buflen);
static int _ksdk_py_request_int(int req, int what, int a, int b);
static int _ksdk_py_mpi_poll(int k, int64_t count);

/* ---- starting Python ---------------------------------------------------------------------- */

static pthread_once_t ksdk_once = PTHREAD_ONCE_INIT;
static atomic_int ksdk_python_ok; /* 1: the bridge is installed */
static char ksdk_start_error[1024];

static void ksdk_start_python(void) {
    if (!Py_IsInitialized()) {
        /* The interpreter of the environment that built the library: with its executable as
         * program name, Python finds the venv's pyvenv.cfg and site-packages (and their .pth
         * files) by itself. No signal handler is installed: the host's stay. */
        PyConfig config;
        PyStatus status;
        PyConfig_InitPythonConfig(&config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        status = PyConfig_SetBytesString(&config, &config.program_name, KSDK_PYTHON_EXECUTABLE);
        if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) {
            snprintf(ksdk_start_error, sizeof ksdk_start_error,
                     "the embedded Python (%s) failed to start: %s", KSDK_PYTHON_EXECUTABLE,
                     status.err_msg ? status.err_msg : "unknown error");
            return;
        }
        /* The GIL is taken only while Python runs: cffi takes it around each call. */
        PyEval_SaveThread();
    }
    /* The first extern "Python" call runs cffi's start-up and the init code (sys.path, import
     * of the bridge), under the GIL so that no other thread of a running interpreter (a host
     * that already embeds Python, or loads this library with ctypes) runs meanwhile. */
    PyGILState_STATE gil = PyGILState_Ensure();
#if PY_VERSION_HEX < 0x030C0000
    /* cffi's start-up before 3.12 uses PyCapsule_Type.tp_version_tag as a spin lock that must
     * read 0 (else it asserts, or spins for ever), but an interpreter that has run for a while
     * may have given that type a version tag. Dropping it is what any change to the type does;
     * holding the GIL, no lookup can assign a new one before cffi is done. */
    PyType_Modified(&PyCapsule_Type);
#endif
    int ready = _ksdk_py_ready();
    PyGILState_Release(gil);
    if (ready == 1) {
        atomic_store(&ksdk_python_ok, 1);
    } else {
        snprintf(ksdk_start_error, sizeof ksdk_start_error,
                 "the embedded Python could not load kernelsdk (its error is on stderr); "
                 "was the library built by another environment? (%s)", KSDK_PYTHON_EXECUTABLE);
    }
}

static int ksdk_python(void) {
    pthread_once(&ksdk_once, ksdk_start_python);
    if (atomic_load(&ksdk_python_ok)) return 1;
    _ksdk_set_error(ksdk_start_error);
    return 0;
}

#define KSDK_NEED_PYTHON(fail) \
    if (!ksdk_python()) return (fail)

/* ---- kernels ------------------------------------------------------------------------------ */

KSDK_EXPORT int ksdk_create(const char *name, const char *kind) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_create(name, kind);
}

KSDK_EXPORT int ksdk_set_option(int k, const char *key, const char *value) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_set_option(k, key, value);
}

KSDK_EXPORT int ksdk_on_execute(int k, ksdk_execute_fn fn, void *user) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_on(k, 0, (ksdk_any_fn)fn, user);
}

KSDK_EXPORT int ksdk_on_complete(int k, ksdk_complete_fn fn, void *user) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_on(k, 1, (ksdk_any_fn)fn, user);
}

KSDK_EXPORT int ksdk_on_inspect(int k, ksdk_inspect_fn fn, void *user) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_on(k, 2, (ksdk_any_fn)fn, user);
}

KSDK_EXPORT int ksdk_on_is_complete(int k, ksdk_is_complete_fn fn, void *user) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_on(k, 3, (ksdk_any_fn)fn, user);
}

KSDK_EXPORT int ksdk_on_interrupt(int k, ksdk_interrupt_fn fn, void *user) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_on(k, 4, (ksdk_any_fn)fn, user);
}

KSDK_EXPORT int ksdk_expose_array(int k, const char *name, void *data, const char *dtype,
                                  int ndim, const int64_t *shape, int flags) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_expose(k, name, data, dtype, ndim, shape, flags, 0);
}

KSDK_EXPORT int ksdk_expose_scalar(int k, const char *name, void *data, const char *dtype,
                                   int flags) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_expose(k, name, data, dtype, 0, NULL, flags, 1);
}

/* The "what" of _ksdk_py_lifecycle. */
#define KSDK_DO_START 0
#define KSDK_DO_POLL 1
#define KSDK_DO_SERVE 2
#define KSDK_DO_STOP 3
#define KSDK_DO_SHUTDOWN_REQUESTED 4

KSDK_EXPORT int ksdk_start(int k) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_lifecycle(k, KSDK_DO_START, 0.0);
}

/* The collective poll of an mpi kernel (state KSDK_STATE_MPI): every rank broadcasts. */
static int ksdk_poll_mpi(int k, double timeout) {
    const ksdk_mpi_poll *m = &ksdk_mpi[k];
    int64_t count = m->claimed;
    if (m->root) {
        /* A cell waits, or the host waits for one: Python claims it and broadcasts. */
        if (timeout > 0.0 || atomic_load_explicit(&ksdk_pending[k], memory_order_acquire) != 0) {
            KSDK_NEED_PYTHON(KSDK_EPYTHON);
            return _ksdk_py_lifecycle(k, KSDK_DO_POLL, timeout);
        }
    }
    int rc = ksdk_mpi_bcast(m, &count);
    if (rc != 0) {
        snprintf(ksdk_error_buf, sizeof ksdk_error_buf,
                 "ksdk_poll: MPI_Bcast of the collective poll failed (MPI error %d)", rc);
        return KSDK_ESTATE;
    }
    if (m->root || count == m->claimed) return 0;
    /* Rank 0 has claimed a cell since: run it here too (Python claims cell number count). */
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_mpi_poll(k, count);
}

KSDK_EXPORT int ksdk_poll(int k, double timeout) {
    /* The fast path: a started kernel with safe points and nothing waiting. The state can
     * only be SERVING (or MPI) once Python runs, so no start-up check is needed either. */
    if (k > 0 && k < KSDK_MAX_HANDLES) {
        int state = atomic_load_explicit(&ksdk_state[k], memory_order_acquire);
        if (state == KSDK_STATE_SERVING && !(timeout > 0.0) &&
            atomic_load_explicit(&ksdk_pending[k], memory_order_acquire) == 0)
            return 0;
        if (state == KSDK_STATE_MPI) return ksdk_poll_mpi(k, timeout);
    }
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_lifecycle(k, KSDK_DO_POLL, timeout);
}

KSDK_EXPORT int ksdk_serve(int k) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_lifecycle(k, KSDK_DO_SERVE, 0.0);
}

KSDK_EXPORT int ksdk_shutdown_requested(int k) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_lifecycle(k, KSDK_DO_SHUTDOWN_REQUESTED, 0.0);
}

KSDK_EXPORT int ksdk_stop(int k) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_lifecycle(k, KSDK_DO_STOP, 0.0);
}

KSDK_EXPORT const char *ksdk_connection_file(int k) {
    KSDK_NEED_PYTHON(NULL);
    return _ksdk_py_connection_file(k);
}

/* ---- requests ----------------------------------------------------------------------------- */

/* The "what" of _ksdk_py_output and _ksdk_py_request_int. */
#define KSDK_OUT_STREAM 0
#define KSDK_OUT_DISPLAY 1
#define KSDK_OUT_RESULT 2
#define KSDK_OUT_ERROR 3
#define KSDK_OUT_MATCH 4
#define KSDK_OUT_INDENT 5
#define KSDK_REQ_INTERRUPTED 0
#define KSDK_REQ_RANGE 1

KSDK_EXPORT int ksdk_stream(int req, const char *name, const char *text) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_output(req, KSDK_OUT_STREAM, name, text, NULL);
}

KSDK_EXPORT int ksdk_display(int req, const char *mimetype, const char *data) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_output(req, KSDK_OUT_DISPLAY, mimetype, data, NULL);
}

KSDK_EXPORT int ksdk_result(int req, const char *mimetype, const char *data) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_output(req, KSDK_OUT_RESULT, mimetype, data, NULL);
}

KSDK_EXPORT int ksdk_error(int req, const char *ename, const char *evalue, const char *traceback) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_output(req, KSDK_OUT_ERROR, ename, evalue, traceback);
}

KSDK_EXPORT int ksdk_complete_match(int req, const char *match) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_output(req, KSDK_OUT_MATCH, match, NULL, NULL);
}

KSDK_EXPORT int ksdk_set_indent(int req, const char *indent) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_output(req, KSDK_OUT_INDENT, indent, NULL, NULL);
}

KSDK_EXPORT int ksdk_complete_range(int req, int start, int end) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_request_int(req, KSDK_REQ_RANGE, start, end);
}

KSDK_EXPORT int ksdk_interrupted(int req) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_request_int(req, KSDK_REQ_INTERRUPTED, 0, 0);
}

KSDK_EXPORT int ksdk_input(int req, const char *prompt, int password, char *buf, int buflen) {
    KSDK_NEED_PYTHON(KSDK_EPYTHON);
    return _ksdk_py_input(req, prompt, password, buf, buflen);
}

KSDK_EXPORT const char *ksdk_last_error(void) { return ksdk_error_buf; }
