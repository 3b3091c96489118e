#include "suites.h"
void run_shared_case_tests() {}
