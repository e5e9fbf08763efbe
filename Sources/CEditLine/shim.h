// libedit's readline-compatible interface: line editing and history for `plmq chat` on a terminal.
#include <stdio.h>
#include <editline/readline.h>
