/* The real test node's pause image, and a workload the tests run. With arguments it prints
 * them, one a line; `--serve PORT TEXT...` also answers every TCP connection on PORT with an
 * HTTP/1.0 response whose body is TEXT; `--get IPV4 PORT` prints what a GET of / there answers
 * (retrying until it connects). Then it sleeps until SIGTERM or SIGINT ends it.
 * Built static: the image holds nothing else. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void done(int sig) {
    (void)sig;
    _exit(0);
}

static void serve(int port, int argc, char **argv) {
    char body[4096] = "", reply[4352];
    for (int i = 0; i < argc; i++) {
        strncat(body, argv[i], sizeof body - strlen(body) - 2);
        strcat(body, "\n");
    }
    int len = snprintf(reply, sizeof reply, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                       "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 16) < 0) {
        perror("serve");
        exit(1);
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        char request[1024];
        (void)!read(c, request, sizeof request);  /* the request itself does not matter */
        (void)!write(c, reply, len);
        close(c);
    }
}

static void get(const char *ip, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "get: not an IPv4 address: %s\n", ip);
        exit(1);
    }
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) == 0) {
            const char *request = "GET / HTTP/1.0\r\n\r\n";
            char answer[4096];
            ssize_t n, len = 0;
            (void)!write(s, request, strlen(request));
            while ((n = read(s, answer + len, sizeof answer - 1 - len)) > 0)
                len += n;
            answer[len] = 0;
            char *body = strstr(answer, "\r\n\r\n");
            fputs(body ? body + 4 : answer, stdout);
            fflush(stdout);
            close(s);
            return;
        }
        perror("get");
        close(s);
        sleep(1);
    }
}

int main(int argc, char **argv) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    if (argc == 4 && strcmp(argv[1], "--get") == 0)
        get(argv[2], atoi(argv[3]));
    int first = argc > 2 && strcmp(argv[1], "--serve") == 0 ? 3 : 1;
    for (int i = first; i < argc && strcmp(argv[1], "--get") != 0; i++)
        puts(argv[i]);
    fflush(stdout);
    if (first == 3)
        serve(atoi(argv[2]), argc - 3, argv + 3);
    for (;;)
        pause();
}
