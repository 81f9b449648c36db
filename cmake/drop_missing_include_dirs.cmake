# Passed as -DCMAKE_PROJECT_INCLUDE=... when building against the ROS 2 PyPI wheels only.
# Their exported message targets list /opt/python/cp311-cp311/include/python3.11, the include
# directory of the machine that built the wheels, which does not exist here and makes CMake's
# generate step fail. At the end of configure, drop such entries from every imported target.
# A normal ROS 2 install never needs this file.
cmake_minimum_required(VERSION 3.19)

function(fer3d_drop_missing_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs)
      list(FILTER _dirs EXCLUDE REGEX "^/opt/python/")
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dirs}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL fer3d_drop_missing_include_dirs)
