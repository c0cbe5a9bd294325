# User C modules of the DL-7450 firmware, for CMake-based ports (esp32, rp2):
#   cmake ... -DUSER_C_MODULES=/path/to/mpy_module/micropython.cmake
include(${CMAKE_CURRENT_LIST_DIR}/mqtt/micropython.cmake)
