/*
 * fuzz_replay.c - the main of a fuzz target built as a plain program (every
 * build, fuzz_*_replay): it replays files, or every file of directories, through
 * the target's LLVMFuzzerTestOneInput, so the seed corpus runs in `make test`
 * whether or not libFuzzer is there. FUZZ_NAME names the target in its output.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int replay(const char *path)
{
    struct stat st;
    if (stat(path, &st)) {
        perror(path);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        int rc = 0;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rc |= replay(p);
        }
        closedir(d);
        return rc;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    unsigned char *b = malloc((size_t)st.st_size + 1);
    size_t n = fread(b, 1, (size_t)st.st_size, f);
    fclose(f);
    LLVMFuzzerTestOneInput(b, n);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= replay(argv[i]);
    fprintf(stderr, "%s: replayed %d paths\n", FUZZ_NAME, argc - 1);
    return rc;
}
