/*
 * The libFuzzer entry point every fuzz target defines, declared once so
 * targets and the standalone driver agree on it.
 */
#ifndef HUBFS_TEST_FUZZ_H
#define HUBFS_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* HUBFS_TEST_FUZZ_H */
