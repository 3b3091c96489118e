#include "suites.h"
void run_session_tests() {}
