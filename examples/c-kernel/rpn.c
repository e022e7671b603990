/* rpn: a small stack language written in C, served as a Jupyter kernel through kernelsdk.h.
 *
 *     1 2 + 3 *        -> Out: 9
 *     ." hello"        -> prints hello (e." hello" on stderr)
 *     ( comments may span lines )
 *
 * Numbers are pushed; words act on the stack (`words` lists them, Shift-Tab describes one).
 * The stack lives on from cell to cell and the top is the cell's result. No Python is written
 * anywhere: the program registers callbacks, starts the kernel and serves it. Build and
 * install with ./build (README.md).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kernelsdk.h>

#define STACK_MAX 1024

typedef struct {
    double values[STACK_MAX];
    int depth;
    atomic_int interrupted; /* set by on_interrupt from the kernel's thread */
} Machine;

typedef int (*WordFn)(Machine *m, int req);

typedef struct {
    const char *name;
    const char *help;
    WordFn fn;
} Word;

/* ---- errors ------------------------------------------------------------------------------- */

static int fail(int req, const char *ename, const char *evalue, const char *word) {
    char traceback[512];
    snprintf(traceback, sizeof traceback, "%s: %s\n    in word `%s`", ename, evalue, word);
    ksdk_error(req, ename, evalue, traceback);
    return 1;
}

static int need(Machine *m, int req, int n, const char *word) {
    if (m->depth >= n) return 0;
    char message[128];
    snprintf(message, sizeof message, "`%s` needs %d value%s, the stack has %d", word, n,
             n == 1 ? "" : "s", m->depth);
    return fail(req, "StackUnderflow", message, word);
}

static int push(Machine *m, int req, double value) {
    if (m->depth == STACK_MAX) return fail(req, "StackOverflow", "the stack is full", "push");
    m->values[m->depth++] = value;
    return 0;
}

static void format_number(double value, char *out, size_t size) {
    snprintf(out, size, "%.15g", value);
}

/* ---- words -------------------------------------------------------------------------------- */

#define BINARY(fname, op, word)                                     \
    static int fname(Machine *m, int req) {                         \
        if (need(m, req, 2, word)) return 1;                        \
        double b = m->values[--m->depth], a = m->values[--m->depth]; \
        return push(m, req, op);                                    \
    }

BINARY(w_add, a + b, "+")
BINARY(w_sub, a - b, "-")
BINARY(w_mul, a * b, "*")
BINARY(w_pow, pow(a, b), "^")

static int w_div(Machine *m, int req) {
    if (need(m, req, 2, "/")) return 1;
    if (m->values[m->depth - 1] == 0.0) return fail(req, "ZeroDivisionError", "division by zero", "/");
    double b = m->values[--m->depth], a = m->values[--m->depth];
    return push(m, req, a / b);
}

static int w_sqrt(Machine *m, int req) {
    if (need(m, req, 1, "sqrt")) return 1;
    if (m->values[m->depth - 1] < 0) return fail(req, "DomainError", "square root of a negative number", "sqrt");
    m->values[m->depth - 1] = sqrt(m->values[m->depth - 1]);
    return 0;
}

static int w_dup(Machine *m, int req) {
    if (need(m, req, 1, "dup")) return 1;
    return push(m, req, m->values[m->depth - 1]);
}

static int w_drop(Machine *m, int req) {
    if (need(m, req, 1, "drop")) return 1;
    m->depth--;
    return 0;
}

static int w_swap(Machine *m, int req) {
    if (need(m, req, 2, "swap")) return 1;
    double top = m->values[m->depth - 1];
    m->values[m->depth - 1] = m->values[m->depth - 2];
    m->values[m->depth - 2] = top;
    return 0;
}

static int w_clear(Machine *m, int req) {
    (void)req;
    m->depth = 0;
    return 0;
}

static int w_print(Machine *m, int req) {
    if (need(m, req, 1, ".")) return 1;
    char text[64];
    format_number(m->values[--m->depth], text, sizeof text - 1);
    strcat(text, "\n");
    return ksdk_stream(req, "stdout", text) < 0;
}

static int w_stack(Machine *m, int req) {
    char text[64];
    ksdk_stream(req, "stdout", "<");
    for (int i = 0; i < m->depth; i++) {
        format_number(m->values[i], text, sizeof text);
        ksdk_stream(req, "stdout", i ? " " : "");
        ksdk_stream(req, "stdout", text);
    }
    return ksdk_stream(req, "stdout", ">\n") < 0;
}

/* The stack as an HTML table, top first. */
static int w_html(Machine *m, int req) {
    size_t size = 128 + (size_t)m->depth * 96;
    char *html = malloc(size);
    if (html == NULL) return fail(req, "MemoryError", "out of memory", "html");
    size_t used = (size_t)snprintf(html, size, "<table class=\"rpn-stack\"><tr><th>#</th><th>value</th></tr>");
    for (int i = m->depth - 1; i >= 0; i--) {
        char number[64];
        format_number(m->values[i], number, sizeof number);
        used += (size_t)snprintf(html + used, size - used, "<tr><td>%d</td><td>%s</td></tr>",
                                 m->depth - 1 - i, number);
    }
    snprintf(html + used, size - used, "</table>");
    int rc = ksdk_display(req, "text/html", html);
    free(html);
    return rc < 0;
}

/* Asks the frontend for a number and pushes it. */
static int w_input(Machine *m, int req) {
    char line[256];
    int n = ksdk_input(req, "number? ", 0, line, sizeof line);
    if (n == KSDK_EINTERRUPTED) return fail(req, "Interrupted", "interrupted while waiting for input", "input");
    if (n < 0) return fail(req, "InputError", ksdk_last_error(), "input");
    char *end;
    errno = 0;
    double value = strtod(line, &end);
    while (*end && isspace((unsigned char)*end)) end++;
    if (end == line || *end || errno) return fail(req, "InputError", "that is not a number", "input");
    return push(m, req, value);
}

/* Asks the frontend for a line and prints it (as a password: not shown while typed). */
static int read_line(int req, int password, const char *word) {
    char line[1024];
    /* One byte short of the buffer: room for the newline printed after it. */
    int n = ksdk_input(req, password ? "password: " : "> ", password, line, (int)sizeof line - 1);
    if (n == KSDK_EINTERRUPTED) return fail(req, "Interrupted", "interrupted while waiting for input", word);
    if (n < 0) return fail(req, "InputError", ksdk_last_error(), word);
    strcat(line, "\n");
    return ksdk_stream(req, "stdout", line) < 0;
}

static int w_read(Machine *m, int req) {
    (void)m;
    return read_line(req, 0, "read");
}

static int w_secret(Machine *m, int req) {
    (void)m;
    return read_line(req, 1, "secret");
}

/* Pops n and works for n seconds, looking for an interrupt every millisecond. */
static int w_wait(Machine *m, int req) {
    if (need(m, req, 1, "wait")) return 1;
    double seconds = m->values[--m->depth];
    struct timespec start, now, nap = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (atomic_load(&m->interrupted)) return fail(req, "Interrupted", "the wait was interrupted", "wait");
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= seconds) return 0;
        nanosleep(&nap, NULL);
    }
}

static int w_words(Machine *m, int req);

static const Word WORDS[] = {
    {"+", "a b + -> a+b", w_add},
    {"-", "a b - -> a-b", w_sub},
    {"*", "a b * -> a*b", w_mul},
    {"/", "a b / -> a/b (b must not be 0)", w_div},
    {"^", "a b ^ -> a to the power b", w_pow},
    {"sqrt", "a sqrt -> the square root of a", w_sqrt},
    {"dup", "a dup -> a a", w_dup},
    {"drop", "a drop -> (nothing)", w_drop},
    {"swap", "a b swap -> b a", w_swap},
    {"clear", "... clear -> (empty stack)", w_clear},
    {".", "a . -> prints a", w_print},
    {".s", "shows the stack, bottom first", w_stack},
    {"html", "displays the stack as an HTML table", w_html},
    {"input", "asks for a number and pushes it", w_input},
    {"read", "asks for a line and prints it", w_read},
    {"secret", "asks for a password and prints it", w_secret},
    {"wait", "n wait -> works for n seconds (interruptible)", w_wait},
    {"words", "lists the words", w_words},
};
#define NWORDS ((int)(sizeof WORDS / sizeof WORDS[0]))

static int w_words(Machine *m, int req) {
    (void)m;
    for (int i = 0; i < NWORDS; i++) {
        ksdk_stream(req, "stdout", WORDS[i].name);
        ksdk_stream(req, "stdout", i + 1 < NWORDS ? " " : "\n");
    }
    return 0;
}

static const Word *find_word(const char *name, size_t length) {
    for (int i = 0; i < NWORDS; i++)
        if (strlen(WORDS[i].name) == length && strncmp(WORDS[i].name, name, length) == 0) return &WORDS[i];
    return NULL;
}

/* ---- the interpreter ---------------------------------------------------------------------- */

/* Runs the tokens of code; 0 or 1 (an error was reported). */
static int run(Machine *m, int req, const char *code) {
    const char *p = code;
    int comment = 0;
    while (*p) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        size_t length = (size_t)(p - start);
        if (comment) {
            if (length == 1 && *start == ')') comment = 0;
            continue;
        }
        if (length == 1 && *start == '(') {
            comment = 1;
            continue;
        }
        /* ." text" prints text; e." text" prints it on stderr. */
        if ((length == 2 && strncmp(start, ".\"", 2) == 0) || (length == 3 && strncmp(start, "e.\"", 3) == 0)) {
            if (*p) p++; /* the one blank after the word */
            const char *close = strchr(p, '"');
            if (close == NULL) return fail(req, "SyntaxError", "a string without its closing \"", ".\"");
            size_t n = (size_t)(close - p);
            char *text = malloc(n + 2);
            if (text == NULL) return fail(req, "MemoryError", "out of memory", ".\"");
            memcpy(text, p, n);
            text[n] = '\n';
            text[n + 1] = '\0';
            int rc = ksdk_stream(req, length == 2 ? "stdout" : "stderr", text);
            free(text);
            if (rc < 0) return 1;
            p = close + 1;
            continue;
        }
        char token[128];
        snprintf(token, sizeof token, "%.*s", (int)(length < 127 ? length : 127), start);
        char *end;
        double value = strtod(token, &end);
        if (*end == '\0' && end != token) {
            if (push(m, req, value)) return 1;
            continue;
        }
        const Word *word = find_word(start, length);
        if (word == NULL) {
            char message[200];
            snprintf(message, sizeof message, "unknown word `%s` (`words` lists them)", token);
            return fail(req, "UnknownWord", message, token);
        }
        if (word->fn(m, req)) return 1;
    }
    return 0;
}

static int on_execute(int req, const char *code, void *user) {
    Machine *m = user;
    atomic_store(&m->interrupted, 0);
    int saved = m->depth;
    double copy[STACK_MAX];
    memcpy(copy, m->values, sizeof(double) * (size_t)saved);
    if (run(m, req, code)) {
        /* A failed cell leaves the stack as it was. */
        memcpy(m->values, copy, sizeof(double) * (size_t)saved);
        m->depth = saved;
        return 1;
    }
    if (m->depth > 0) {
        char text[64];
        format_number(m->values[m->depth - 1], text, sizeof text);
        ksdk_result(req, "text/plain", text);
    }
    return 0;
}

/* The start of the token that ends at cursor. */
static int token_start(const char *code, int cursor) {
    int start = cursor;
    while (start > 0 && !isspace((unsigned char)code[start - 1])) start--;
    return start;
}

static int on_complete(int req, const char *code, int cursor, void *user) {
    (void)user;
    int start = token_start(code, cursor);
    size_t length = (size_t)(cursor - start);
    for (int i = 0; i < NWORDS; i++)
        if (strncmp(WORDS[i].name, code + start, length) == 0) ksdk_complete_match(req, WORDS[i].name);
    return ksdk_complete_range(req, start, cursor);
}

static int on_inspect(int req, const char *code, int cursor, int detail_level, void *user) {
    (void)user;
    (void)detail_level;
    int start = token_start(code, cursor), end = cursor;
    while (code[end] && !isspace((unsigned char)code[end])) end++;
    const Word *word = find_word(code + start, (size_t)(end - start));
    if (word == NULL) return 0;
    char text[256];
    snprintf(text, sizeof text, "%s: %s", word->name, word->help);
    return ksdk_result(req, "text/plain", text);
}

/* Incomplete while a ( comment is open. */
static int on_is_complete(int req, const char *code, void *user) {
    (void)req;
    (void)user;
    int open = 0;
    for (const char *p = code; *p;) {
        while (*p && isspace((unsigned char)*p)) p++;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (p - start == 1 && *start == '(') open = 1;
        if (p - start == 1 && *start == ')') open = 0;
    }
    return open ? KSDK_INCOMPLETE : KSDK_COMPLETE;
}

static void on_interrupt(void *user) {
    Machine *m = user;
    atomic_store(&m->interrupted, 1);
}

/* ---- main --------------------------------------------------------------------------------- */

static int check(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "rpn-kernel: %s failed (%d): %s\n", what, rc, ksdk_last_error());
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv) {
    const char *connection_file = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) connection_file = argv[++i];

    static Machine machine;
    int k = check(ksdk_create("rpn", "native"), "ksdk_create");
    if (connection_file) {
        check(ksdk_set_option(k, "connection_file", connection_file), "connection_file");
        /* Launched by a frontend: end with it, should it die without shutting us down. */
        check(ksdk_set_option(k, "watch_parent", "1"), "watch_parent");
    }
    /* Launched by a frontend: its shutdown ends the program. Cells run on this thread. */
    check(ksdk_set_option(k, "allow_shutdown", "1"), "allow_shutdown");
    check(ksdk_set_option(k, "safe_points", "1"), "safe_points");
    check(ksdk_set_option(k, "implementation", "rpn-kernel"), "implementation");
    check(ksdk_set_option(k, "implementation_version", "1.0"), "implementation_version");
    check(ksdk_set_option(k, "language", "rpn"), "language");
    check(ksdk_set_option(k, "language_version", "1.0"), "language_version");
    check(ksdk_set_option(k, "file_extension", ".rpn"), "file_extension");
    check(ksdk_set_option(k, "mimetype", "text/x-rpn"), "mimetype");
    check(ksdk_set_option(k, "banner", "rpn 1.0: a stack calculator written in C (`words` lists the words)"), "banner");
    check(ksdk_on_execute(k, on_execute, &machine), "on_execute");
    check(ksdk_on_complete(k, on_complete, &machine), "on_complete");
    check(ksdk_on_inspect(k, on_inspect, &machine), "on_inspect");
    check(ksdk_on_is_complete(k, on_is_complete, &machine), "on_is_complete");
    check(ksdk_on_interrupt(k, on_interrupt, &machine), "on_interrupt");
    check(ksdk_start(k), "ksdk_start");
    if (!connection_file) printf("connection file: %s\n", ksdk_connection_file(k));
    fflush(stdout);
    check(ksdk_serve(k), "ksdk_serve");
    check(ksdk_stop(k), "ksdk_stop");
    return 0;
}
