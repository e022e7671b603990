/* Callbacks of a native kernel, as a shared library the test process loads with ctypes (a C
 * host's callbacks are C; ctypes' own callbacks would be Python). What each one does is in
 * test_in_process_native_kernel. */
#include <stdio.h>
#include <string.h>

#include <kernelsdk.h>

int last_request = 0;
int interrupts = 0;

int toy_execute(int req, const char *code, void *user) {
    (void)user;
    last_request = req;
    if (strcmp(code, "fail") == 0) {
        ksdk_error(req, "Boom", "it failed", "line 1\nline 2");
        return 1;
    }
    if (strcmp(code, "status") == 0) return 3;
    if (strcmp(code, "bad") == 0) {
        int ok = ksdk_stream(req, "stdlog", "x") == KSDK_EARG &&
                 ksdk_display(req, "application/json", "{not json") == KSDK_EARG &&
                 ksdk_complete_match(req, "x") == KSDK_EREQUEST &&
                 ksdk_stream(req, NULL, "x") == KSDK_EARG && ksdk_interrupted(req) == 0;
        ksdk_stream(req, "stdout", ok ? "all refused\n" : "FAIL\n");
        return 0;
    }
    if (strcmp(code, "ask") == 0) {
        char buf[4], text[64];
        int n = ksdk_input(req, "name? ", 0, buf, sizeof buf);
        snprintf(text, sizeof text, "%d %s\n", n, n >= 0 ? buf : "");
        ksdk_stream(req, "stdout", text);
        return 0;
    }
    ksdk_stream(req, "stdout", "echo: ");
    ksdk_stream(req, "stdout", code);
    ksdk_stream(req, "stderr", "warn");
    ksdk_display(req, "application/json", "{\"a\": [1, 2]}");
    char result[256];
    snprintf(result, sizeof result, "\xc3\xa9%s", code);
    ksdk_result(req, "text/plain", result);
    return 0;
}

int toy_complete(int req, const char *code, int cursor, void *user) {
    (void)user;
    if (strncmp(code, "range", 5) == 0) {
        if (ksdk_complete_range(req, 3, 1) != KSDK_EARG) return 1;
        return ksdk_complete_range(req, 0, cursor);
    }
    ksdk_complete_match(req, "alpha");
    return ksdk_complete_match(req, "alps");
}

int toy_inspect(int req, const char *code, int cursor, int detail_level, void *user) {
    (void)user;
    if (strstr(code, "nothing")) return 0;
    char text[64];
    snprintf(text, sizeof text, "at %d level %d", cursor, detail_level);
    return ksdk_result(req, "text/plain", text);
}

int toy_is_complete(int req, const char *code, void *user) {
    (void)user;
    size_t n = strlen(code);
    if (n && code[n - 1] == '{') {
        ksdk_set_indent(req, "    ");
        return KSDK_INCOMPLETE;
    }
    if (strcmp(code, "bad") == 0) return KSDK_INVALID;
    if (strcmp(code, "?") == 0) return KSDK_UNKNOWN;
    return KSDK_COMPLETE;
}

void toy_interrupt(void *user) {
    (void)user;
    interrupts++;
}
