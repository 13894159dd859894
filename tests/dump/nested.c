/* A process to analyse offline: main calls outer_function, middle_function and
 * inner_function, which blocks reading stdin. It prints READY and its pid once blocked-to-be.
 * A global string and a heap string give known memory to look for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char crak_global_text[] = "crak global text 5f3a";
char *crak_heap_text;

__attribute__((noinline)) int inner_function(int depth)
{
    char c;
    printf("READY %d\n", (int)getpid());
    fflush(stdout);
    ssize_t n = read(0, &c, 1);
    return depth + (int)n;
}

__attribute__((noinline)) int middle_function(int depth)
{
    return inner_function(depth + 1) + 1;
}

__attribute__((noinline)) int outer_function(int depth)
{
    return middle_function(depth + 1) + 1;
}

int main(void)
{
    crak_heap_text = strdup("crak heap text 91c7");
    return outer_function(0) > 100;
}
