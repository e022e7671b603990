/* API misuse from C: every call returns an error code with a message, none crashes.
 * Prints "ok" lines and "FAIL" lines; exits 1 if any check failed. With argv[1] = "started",
 * also the misuse of a started and then stopped kernel. */
#include <stdio.h>
#include <string.h>

#include <kernelsdk.h>

static int failures = 0;

static void expect(const char *what, int got, int code, const char *words) {
    const char *message = ksdk_last_error();
    if (got != code || strstr(message, words) == NULL) {
        printf("FAIL %s: got %d (wanted %d), message \"%s\" (wanted \"%s\")\n", what, got, code,
               message, words);
        failures++;
    } else {
        printf("ok %s: %s\n", what, message);
    }
}

static int execute(int req, const char *code, void *user) {
    (void)req;
    (void)code;
    (void)user;
    return 0;
}

int main(int argc, char **argv) {
    double x = 1.0;
    int64_t shape[2] = {2, 3};
    expect("create NULL name", ksdk_create(NULL, "python"), KSDK_EARG, "name is NULL");
    expect("create NULL kind", ksdk_create("a", NULL), KSDK_EARG, "kind is NULL");
    expect("create bad kind", ksdk_create("a", "cobol"), KSDK_EARG, "'python' or 'native'");
    expect("create bad name", ksdk_create("a b", "python"), KSDK_EARG, "name is 1 to 64");
    expect("start unknown", ksdk_start(12345), KSDK_EHANDLE, "no kernel has the handle 12345");
    expect("start negative", ksdk_start(-3), KSDK_EHANDLE, "no kernel has the handle -3");
    expect("poll unknown", ksdk_poll(0, 0.0), KSDK_EHANDLE, "handle 0");
    expect("poll huge", ksdk_poll(1 << 30, 0.0), KSDK_EHANDLE, "no kernel has the handle");
    int py = ksdk_create("misuse", "python");
    int native = ksdk_create("misuse-native", "native");
    if (py <= 0 || native <= 0) {
        printf("FAIL create: %d %d %s\n", py, native, ksdk_last_error());
        return 1;
    }
    expect("poll before start", ksdk_poll(py, 0.0), KSDK_ESTATE, "not started");
    expect("serve before start", ksdk_serve(py), KSDK_ESTATE, "not started");
    expect("connection file before start", ksdk_connection_file(py) == NULL ? -3 : 0, KSDK_ESTATE,
           "not started");
    expect("option NULL key", ksdk_set_option(py, NULL, "1"), KSDK_EARG, "key is NULL");
    expect("option NULL value", ksdk_set_option(py, "safe_points", NULL), KSDK_EARG, "value is NULL");
    expect("option unknown", ksdk_set_option(py, "colour", "red"), KSDK_EARG, "unknown option 'colour'");
    expect("option bad bool", ksdk_set_option(py, "safe_points", "maybe"), KSDK_EARG, "takes 0 or 1");
    expect("option native-only", ksdk_set_option(py, "language", "x"), KSDK_EARG, "native kernel");
    expect("callback on python", ksdk_on_execute(py, execute, NULL), KSDK_EARG, "callbacks are for native");
    expect("expose on native", ksdk_expose_scalar(native, "x", &x, "float64", 0), KSDK_EARG, "python kernels");
    expect("expose NULL data", ksdk_expose_scalar(py, "x", NULL, "float64", 0), KSDK_EARG, "data of x is NULL");
    expect("expose NULL name", ksdk_expose_scalar(py, NULL, &x, "float64", 0), KSDK_EARG, "name is NULL");
    expect("expose bad name", ksdk_expose_scalar(py, "1x", &x, "float64", 0), KSDK_EARG, "not a Python identifier");
    expect("expose bad dtype", ksdk_expose_scalar(py, "x", &x, "complex", 0), KSDK_EARG, "unknown dtype 'complex'");
    expect("expose NULL shape", ksdk_expose_array(py, "a", &x, "float64", 2, NULL, 0), KSDK_EARG, "shape of a is NULL");
    expect("expose bad ndim", ksdk_expose_array(py, "a", &x, "float64", -1, shape, 0), KSDK_EARG, "ndim");
    expect("stream no request", ksdk_stream(1, "stdout", "x"), KSDK_EREQUEST, "not running");
    expect("result no request", ksdk_result(-1, "text/plain", "x"), KSDK_EREQUEST, "not running");
    expect("input no request", ksdk_input(7, "?", 0, NULL, 0), KSDK_EREQUEST, "not running");
    expect("interrupted no request", ksdk_interrupted(7), KSDK_EREQUEST, "not running");
    if (argc > 1 && strcmp(argv[1], "started") == 0) {
        if (ksdk_set_option(py, "safe_points", "1") < 0 || ksdk_start(py) < 0) {
            printf("FAIL start: %s\n", ksdk_last_error());
            return 1;
        }
        expect("second start", ksdk_start(py), KSDK_ESTATE, "already started");
        expect("option after start", ksdk_set_option(py, "ip", "127.0.0.1"), KSDK_ESTATE, "before ksdk_start");
        expect("poll", ksdk_poll(py, 0.0), 0, "");
        expect("stop", ksdk_stop(py), 0, "");
        expect("poll after stop", ksdk_poll(py, 0.0), KSDK_ESTATE, "was stopped");
        expect("serve after stop", ksdk_serve(py), KSDK_ESTATE, "was stopped");
        expect("second stop", ksdk_stop(py), KSDK_ESTATE, "was stopped");
        expect("expose after stop", ksdk_expose_scalar(py, "x", &x, "float64", 0), KSDK_ESTATE, "was stopped");
    }
    expect("stop never started", ksdk_stop(native), 0, "");
    expect("start after stop", ksdk_start(native), KSDK_ESTATE, "was stopped");
    printf("%s\n", failures ? "FAILED" : "ALL OK");
    return failures != 0;
}
