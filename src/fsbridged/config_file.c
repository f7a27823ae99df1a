/*
 * config_file.c - see config_file.h.
 *
 * The file is the administrator's, not a guest's: its lines become
 * command-line options, and options.c stays the one parser of what an
 * option means (a file and a command line cannot disagree).
 */
#include "fsbridged/config_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A NULL-terminated argument vector whose strings are all its own. */
struct arg_vector {
    char **v;
    int n, cap;
};

/* The expanded command line: options keep pointers into its strings, and
 * holding it here keeps it reachable for the life of the process (for
 * LeakSanitizer too: volatile, or the never-read store would be dropped). */
static char **volatile expanded;

static void arg_vector_free(struct arg_vector *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    *a = (struct arg_vector){ 0 };
}

/* Appends s (owned from now on); -1 when out of memory. */
static int push(struct arg_vector *a, char *s)
{
    if (!s)
        return -1;
    if (a->n + 1 >= a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, (size_t)cap * sizeof(*v));
        if (!v) {
            free(s);
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
    return 0;
}

/* "fsbridged: FILE:LINE: what", or "fsbridged: WHERE: what" without a line. */
static int fail(const char *where, unsigned line, const char *what)
{
    if (line)
        fprintf(stderr, "fsbridged: %s:%u: %s (see fsbridged --help)\n", where, line, what);
    else
        fprintf(stderr, "fsbridged: %s: %s\n", where, what);
    return -1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = 0;
    return s;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static const struct option *find_option(const struct option *longopts, const char *name,
                                        size_t len)
{
    for (const struct option *o = longopts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

/* NAME is an option, with a value exactly when it takes one. */
static const char *check_option(const struct option *longopts, const char *name, size_t len,
                                bool has_value)
{
    const struct option *o = find_option(longopts, name, len);
    if (len == 6 && strncmp(name, "config", 6) == 0)
        return "a config file cannot name another one";
    if (!o)
        return "unknown option";
    if (o->has_arg == required_argument && !has_value)
        return "this option needs a value (NAME VALUE)";
    if (o->has_arg == no_argument && has_value)
        return "this option takes no value";
    return NULL;
}

#define WHY_SIZE 160

/* One line as "--NAME" or "--NAME=VALUE" in *out; *out stays NULL for a
 * blank or comment line.  Returns -1 with why[WHY_SIZE] filled for a bad
 * line. */
static int line_to_option(char *line, const struct option *longopts, char **out, char *why)
{
    char *s = trim(line);
    *out = NULL;
    if (!*s || *s == '#')
        return 0;
    if (strncmp(s, "--", 2) == 0)
        s += 2;
    size_t len = 0;
    while (name_char(s[len]))
        len++;
    char *rest = s + len;
    if (len == 0 || (*rest && *rest != '=' && !isspace((unsigned char)*rest))) {
        snprintf(why, WHY_SIZE, "expected NAME, NAME VALUE or NAME=VALUE (NAME: a long option)");
        return -1;
    }
    bool has_value = *rest != 0;
    *rest++ = 0;
    if (has_value) {
        rest = trim(rest);
        if (*rest == '=')
            rest = trim(rest + 1);
    }
    const char *wrong = check_option(longopts, s, len, has_value);
    if (wrong) {
        snprintf(why, WHY_SIZE, "%s: %s", s, wrong);
        return -1;
    }
    int n = has_value ? asprintf(out, "--%s=%s", s, rest) : asprintf(out, "--%s", s);
    if (n < 0) {
        *out = NULL;
        snprintf(why, WHY_SIZE, "%s", strerror(ENOMEM));
        return -1;
    }
    return 0;
}

static int read_config(const char *file, const struct option *longopts, struct arg_vector *a)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return fail(file, 0, strerror(errno));
    char *line = NULL;
    size_t size = 0;
    unsigned lineno = 0;
    int r = 0;
    while (r == 0 && getline(&line, &size, f) >= 0) {
        char why[WHY_SIZE];
        char *option;
        lineno++;
        if (line_to_option(line, longopts, &option, why) < 0)
            r = fail(file, lineno, why);
        else if (option && push(a, option) < 0)
            r = fail(file, lineno, strerror(ENOMEM));
    }
    if (r == 0 && ferror(f))
        r = fail(file, 0, strerror(errno));
    free(line);
    fclose(f);
    return r;
}

/* The FILE of argv[i] when it is --config, else NULL; *i moves past it. */
static const char *config_argument(int argc, char **argv, int *i, bool *missing)
{
    if (strncmp(argv[*i], "--config=", 9) == 0)
        return argv[*i] + 9;
    if (strcmp(argv[*i], "--config") != 0)
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int config_expand_argv(int *argc, char ***argv, const struct option *longopts)
{
    struct arg_vector out = { 0 };
    bool any = false, missing = false, options_end = false;
    for (int i = 0; i < *argc; i++) {
        const char *file = NULL;
        if (i > 0 && !options_end) {
            options_end = strcmp((*argv)[i], "--") == 0;
            file = config_argument(*argc, *argv, &i, &missing);
        }
        int r = 0;
        if (missing)
            r = fail("--config", 0, "missing FILE");
        else if (file)
            r = read_config(file, longopts, &out);
        else if (push(&out, strdup((*argv)[i])) < 0)
            r = fail("--config", 0, strerror(ENOMEM));
        if (r < 0) {
            arg_vector_free(&out);
            return -1;
        }
        any |= file != NULL;
    }
    if (!any) {
        arg_vector_free(&out);
        return 0;
    }
    expanded = out.v;
    *argc = out.n;
    *argv = out.v;
    return 0;
}
