#include "suites.h"
void run_codec_tests() {}
