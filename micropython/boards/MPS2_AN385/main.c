/*
 * The main loop of the DL-7450 device firmware on MPS2-AN385.
 *
 * With a script on the semihosting command line (tools/device-run: the words
 * after the firmware are the script's path and its sys.argv[1:]), the
 * firmware runs the script, then its sys.atexit function: the mqtt module's
 * runs the clients until none is active, as on the device after main.py.
 * It then ends the emulation with the script's status: 0, 1 for an uncaught
 * exception, or the code given to sys.exit().
 *
 * Without a script it runs the REPL on UART 0. The event hook keeps the
 * clients running while the REPL waits for input.
 */
#include <string.h>

#include "py/compile.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "py/gc.h"
#include "py/mperrno.h"
#include "shared/runtime/gchelper.h"
#include "shared/runtime/pyexec.h"
#include "board.h"

#if MICROPY_HEAP_SIZE <= 0
#error MICROPY_HEAP_SIZE must be a positive integer.
#endif

static uint32_t gc_heap[MICROPY_HEAP_SIZE / sizeof(uint32_t)];

#define MAX_ARGS (16)

// The exit status an exception stands for: sys.exit()'s code, or 1 after
// printing the traceback.
static int exit_status(mp_obj_t exc) {
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)), MP_OBJ_FROM_PTR(&mp_type_SystemExit))) {
        mp_obj_t code = mp_obj_exception_get_value(exc);
        if (code == mp_const_none) {
            return 0;
        }
        return mp_obj_is_small_int(code) ? MP_OBJ_SMALL_INT_VALUE(code) : 1;
    }
    mp_obj_print_exception(&mp_plat_print, exc);
    return 1;
}

static int run_script(const char *path) {
    char *src;
    size_t len;
    if (board_read_host_file(path, &src, &len) != 0) {
        mp_printf(&mp_plat_print, "cannot read %s\n", path);
        return 2;
    }
    int status = 0;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        qstr name = qstr_from_str(path);
        mp_lexer_t *lex = mp_lexer_new_from_str_len(name, src, len, 0);
        mp_parse_tree_t tree = mp_parse(lex, MP_PARSE_FILE_INPUT);
        mp_obj_t fun = mp_compile(&tree, name, false);
        mp_call_function_0(fun);
        nlr_pop();
    } else {
        status = exit_status(MP_OBJ_FROM_PTR(nlr.ret_val));
    }
    // After the script, as the unix port does: sys.atexit's function (the
    // mqtt module's runs the clients until none is active).
    if (MP_STATE_VM(sys_exitfunc) != mp_const_none) {
        if (nlr_push(&nlr) == 0) {
            mp_call_function_0(MP_STATE_VM(sys_exitfunc));
            nlr_pop();
        } else {
            status = exit_status(MP_OBJ_FROM_PTR(nlr.ret_val));
        }
    }
    return status;
}

static void run_repl(void) {
    for (;;) {
        if (pyexec_mode_kind == PYEXEC_MODE_RAW_REPL) {
            if (pyexec_raw_repl() != 0) {
                break;
            }
        } else {
            if (pyexec_friendly_repl() != 0) {
                break;
            }
        }
    }
}

int main(void) {
    mp_stack_ctrl_init();
    mp_stack_set_limit(10240);
    gc_init(gc_heap, (char *)gc_heap + MICROPY_HEAP_SIZE);

    static char cmdline[512];
    char *argv[MAX_ARGS];
    int argc = 0;
    size_t n = board_cmdline(cmdline, sizeof(cmdline));
    cmdline[n] = 0;
    // Words separated by spaces (the runner passes no word with a space).
    for (char *p = cmdline; *p != 0 && argc < MAX_ARGS;) {
        while (*p == ' ') {
            *p++ = 0;
        }
        if (*p != 0) {
            argv[argc++] = p;
        }
        while (*p != 0 && *p != ' ') {
            p++;
        }
    }

    for (;;) {
        mp_init();
        if (argc >= 2) {
            // argv[0] is the firmware image, argv[1] the script.
            for (int i = 1; i < argc; i++) {
                mp_obj_list_append(mp_sys_argv, mp_obj_new_str(argv[i], strlen(argv[i])));
            }
            int status = run_script(argv[1]);
            mp_deinit();
            return status;
        }
        run_repl();
        mp_printf(&mp_plat_print, "MPY: soft reboot\n");
        gc_sweep_all();
        mp_deinit();
    }
}

void gc_collect(void) {
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

void nlr_jump_fail(void *val) {
    mp_printf(&mp_plat_print, "uncaught NLR\n");
    board_exit(1);
}
