! kernelsdk.f90: the Fortran module over kernelsdk.h (iso_c_binding), for hosts built with
!
!     gfortran host.f90 $(python -m kernelsdk config --fflags --ldflags)
!
! Strings are Fortran strings (trailing blanks dropped); handles are default integers; every
! function returns >= 0 on success, a negative KSDK_E* code on failure, and then
! ksdk_last_error() says why. Arrays exposed with ksdk_expose keep their Fortran shape in the
! cells (a(n1, n2) is a NumPy array of shape (n1, n2), 0-based) and must stay allocated, and
! declared `target`, until ksdk_stop. docs/c-api.md is the reference.
module kernelsdk
  use, intrinsic :: iso_c_binding
  implicit none
  private

  integer, parameter, public :: KSDK_OK = 0, KSDK_EARG = -1, KSDK_EHANDLE = -2, &
                                KSDK_ESTATE = -3, KSDK_EREQUEST = -4, KSDK_EPYTHON = -5, &
                                KSDK_ESTART = -6, KSDK_EINTERRUPTED = -7, KSDK_ESTDIN = -8, &
                                KSDK_ELIMIT = -9
  integer(c_int), parameter :: KSDK_WRITABLE = 1, KSDK_COLUMN_MAJOR = 2

  public :: ksdk_create, ksdk_set_option, ksdk_expose, ksdk_start, ksdk_poll, ksdk_serve, &
            ksdk_stop, ksdk_shutdown_requested, ksdk_connection_file, ksdk_last_error

  interface
    integer(c_int) function c_create(name, kind) bind(C, name="ksdk_create")
      import :: c_int, c_char
      character(kind=c_char), dimension(*), intent(in) :: name, kind
    end function c_create
    integer(c_int) function c_set_option(k, key, value) bind(C, name="ksdk_set_option")
      import :: c_int, c_char
      integer(c_int), value :: k
      character(kind=c_char), dimension(*), intent(in) :: key, value
    end function c_set_option
    integer(c_int) function c_expose_array(k, name, data, dtype, ndim, shape, flags) &
        bind(C, name="ksdk_expose_array")
      import :: c_int, c_char, c_ptr, c_int64_t
      integer(c_int), value :: k, ndim, flags
      character(kind=c_char), dimension(*), intent(in) :: name, dtype
      type(c_ptr), value :: data
      integer(c_int64_t), dimension(*), intent(in) :: shape
    end function c_expose_array
    integer(c_int) function c_expose_scalar(k, name, data, dtype, flags) &
        bind(C, name="ksdk_expose_scalar")
      import :: c_int, c_char, c_ptr
      integer(c_int), value :: k, flags
      character(kind=c_char), dimension(*), intent(in) :: name, dtype
      type(c_ptr), value :: data
    end function c_expose_scalar
    integer(c_int) function c_start(k) bind(C, name="ksdk_start")
      import :: c_int
      integer(c_int), value :: k
    end function c_start
    integer(c_int) function c_poll(k, timeout) bind(C, name="ksdk_poll")
      import :: c_int, c_double
      integer(c_int), value :: k
      real(c_double), value :: timeout
    end function c_poll
    integer(c_int) function c_serve(k) bind(C, name="ksdk_serve")
      import :: c_int
      integer(c_int), value :: k
    end function c_serve
    integer(c_int) function c_stop(k) bind(C, name="ksdk_stop")
      import :: c_int
      integer(c_int), value :: k
    end function c_stop
    integer(c_int) function c_shutdown_requested(k) bind(C, name="ksdk_shutdown_requested")
      import :: c_int
      integer(c_int), value :: k
    end function c_shutdown_requested
    type(c_ptr) function c_connection_file(k) bind(C, name="ksdk_connection_file")
      import :: c_int, c_ptr
      integer(c_int), value :: k
    end function c_connection_file
    type(c_ptr) function c_last_error() bind(C, name="ksdk_last_error")
      import :: c_ptr
    end function c_last_error
    function c_strlen(s) bind(C, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: n
    end function c_strlen
  end interface

  !> ksdk_expose(k, name, x [, writable]): a real(c_double), real(c_float), integer(c_int32_t)
  !> or integer(c_int64_t) scalar or array of rank 1 to 3, shared with the cells as `name`.
  interface ksdk_expose
     module procedure expose_r8_0, expose_r8_1, expose_r8_2, expose_r8_3
     module procedure expose_r4_0, expose_r4_1, expose_r4_2, expose_r4_3
     module procedure expose_i4_0, expose_i4_1, expose_i4_2, expose_i4_3
     module procedure expose_i8_0, expose_i8_1, expose_i8_2, expose_i8_3
  end interface ksdk_expose

contains

  function c_str(s) result(r)
    character(*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: r
    r = trim(s)//c_null_char
  end function c_str

  function f_str(p) result(s)
    type(c_ptr), intent(in) :: p
    character(:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      s = ""
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function f_str

  integer(c_int) function flags(writable)
    logical, intent(in), optional :: writable
    flags = 0
    if (present(writable)) then
      if (writable) flags = KSDK_WRITABLE
    end if
  end function flags

  !> A new kernel: kind "python" or "native"; a handle > 0 or an error code.
  integer function ksdk_create(name, kind) result(rc)
    character(*), intent(in) :: name, kind
    rc = c_create(c_str(name), c_str(kind))
  end function ksdk_create

  integer function ksdk_set_option(k, key, value) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: key, value
    rc = c_set_option(int(k, c_int), c_str(key), c_str(value))
  end function ksdk_set_option

  integer function ksdk_start(k) result(rc)
    integer, intent(in) :: k
    rc = c_start(int(k, c_int))
  end function ksdk_start

  !> A safe point: the cells waiting (or arriving within timeout seconds) run now; how many.
  integer function ksdk_poll(k, timeout) result(rc)
    integer, intent(in) :: k
    real(c_double), intent(in), optional :: timeout
    real(c_double) :: wait
    wait = 0.0_c_double
    if (present(timeout)) wait = timeout
    rc = c_poll(int(k, c_int), wait)
  end function ksdk_poll

  integer function ksdk_serve(k) result(rc)
    integer, intent(in) :: k
    rc = c_serve(int(k, c_int))
  end function ksdk_serve

  integer function ksdk_stop(k) result(rc)
    integer, intent(in) :: k
    rc = c_stop(int(k, c_int))
  end function ksdk_stop

  integer function ksdk_shutdown_requested(k) result(rc)
    integer, intent(in) :: k
    rc = c_shutdown_requested(int(k, c_int))
  end function ksdk_shutdown_requested

  function ksdk_connection_file(k) result(path)
    integer, intent(in) :: k
    character(:), allocatable :: path
    path = f_str(c_connection_file(int(k, c_int)))
  end function ksdk_connection_file

  function ksdk_last_error() result(message)
    character(:), allocatable :: message
    message = f_str(c_last_error())
  end function ksdk_last_error

  integer function expose_r8_0(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_double), intent(inout), target :: x
    logical, intent(in), optional :: writable
    rc = c_expose_scalar(int(k, c_int), c_str(name), c_loc(x), c_str("float64"), flags(writable))
  end function expose_r8_0

  integer function expose_r8_1(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_double), intent(inout), target, contiguous :: x(:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(1)
    extents = [int(size(x, 1), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("float64"), 1_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_r8_1

  integer function expose_r8_2(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_double), intent(inout), target, contiguous :: x(:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(2)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("float64"), 2_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_r8_2

  integer function expose_r8_3(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_double), intent(inout), target, contiguous :: x(:,:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(3)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t), int(size(x, 3), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("float64"), 3_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_r8_3

  integer function expose_r4_0(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_float), intent(inout), target :: x
    logical, intent(in), optional :: writable
    rc = c_expose_scalar(int(k, c_int), c_str(name), c_loc(x), c_str("float32"), flags(writable))
  end function expose_r4_0

  integer function expose_r4_1(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_float), intent(inout), target, contiguous :: x(:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(1)
    extents = [int(size(x, 1), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("float32"), 1_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_r4_1

  integer function expose_r4_2(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_float), intent(inout), target, contiguous :: x(:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(2)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("float32"), 2_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_r4_2

  integer function expose_r4_3(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    real(c_float), intent(inout), target, contiguous :: x(:,:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(3)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t), int(size(x, 3), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("float32"), 3_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_r4_3

  integer function expose_i4_0(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int32_t), intent(inout), target :: x
    logical, intent(in), optional :: writable
    rc = c_expose_scalar(int(k, c_int), c_str(name), c_loc(x), c_str("int32"), flags(writable))
  end function expose_i4_0

  integer function expose_i4_1(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int32_t), intent(inout), target, contiguous :: x(:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(1)
    extents = [int(size(x, 1), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("int32"), 1_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_i4_1

  integer function expose_i4_2(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int32_t), intent(inout), target, contiguous :: x(:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(2)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("int32"), 2_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_i4_2

  integer function expose_i4_3(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int32_t), intent(inout), target, contiguous :: x(:,:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(3)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t), int(size(x, 3), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("int32"), 3_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_i4_3

  integer function expose_i8_0(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int64_t), intent(inout), target :: x
    logical, intent(in), optional :: writable
    rc = c_expose_scalar(int(k, c_int), c_str(name), c_loc(x), c_str("int64"), flags(writable))
  end function expose_i8_0

  integer function expose_i8_1(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int64_t), intent(inout), target, contiguous :: x(:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(1)
    extents = [int(size(x, 1), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("int64"), 1_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_i8_1

  integer function expose_i8_2(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int64_t), intent(inout), target, contiguous :: x(:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(2)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("int64"), 2_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_i8_2

  integer function expose_i8_3(k, name, x, writable) result(rc)
    integer, intent(in) :: k
    character(*), intent(in) :: name
    integer(c_int64_t), intent(inout), target, contiguous :: x(:,:,:)
    logical, intent(in), optional :: writable
    integer(c_int64_t) :: extents(3)
    extents = [int(size(x, 1), c_int64_t), int(size(x, 2), c_int64_t), int(size(x, 3), c_int64_t)]
    rc = c_expose_array(int(k, c_int), c_str(name), c_loc(x), c_str("int64"), 3_c_int, &
                        extents, ior(flags(writable), KSDK_COLUMN_MAJOR))
  end function expose_i8_3

end module kernelsdk
