/* The real test node's pause image, and a workload the tests run: it prints its arguments,
 * one a line, then sleeps until SIGTERM or SIGINT ends it. Built static (no libc in the image). */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void done(int sig) {
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    for (int i = 1; i < argc; i++)
        puts(argv[i]);
    fflush(stdout);
    for (;;)
        pause();
}
