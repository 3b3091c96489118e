#include "suites.h"
void run_backoff_tests() {}
