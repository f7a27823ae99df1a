/*
 * config_file.h - fsbridged --config FILE: a file of long options, one per
 * line, for the systemd instances (/etc/fsbridge/INSTANCE.conf).
 */
#ifndef FSB_CONFIG_FILE_H
#define FSB_CONFIG_FILE_H

#include <getopt.h>

/*
 * Replaces each "--config FILE" (or "--config=FILE") of *argv by the
 * options in FILE, at that place: options after it on the command line add
 * to the file's or override its single-valued ones.  A line is
 * "NAME VALUE", "NAME=VALUE" or "NAME" (an option without argument), with
 * an optional leading "--"; blank lines and lines starting with '#' are
 * skipped; VALUE is the rest of the line, spaces inside kept.  NAME must
 * be one of longopts, spelt out, with a VALUE exactly when it takes one
 * (so that a line never takes the next option for its value).  The new
 * vector and its strings live as long as the process (options keep
 * pointers into them).  Returns 0, or -1 after printing one line naming
 * the file and line.
 */
int config_expand_argv(int *argc, char ***argv, const struct option *longopts);

#endif
