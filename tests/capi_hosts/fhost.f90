! A Fortran host embedding a python kernel with safe points: a time-step loop that polls.
! Exposes t (real(8), 3 x 2, t(i, j) = 10 i + j), gain (real(8), writable) and stop
! (integer(4), writable). Prints "connection_file PATH", then "gain G stopped" at the end.
program fhost
  use, intrinsic :: iso_c_binding
  use kernelsdk
  implicit none
  real(c_double), target :: t(3, 2), gain
  integer(c_int32_t), target :: stop
  integer :: k, i, j, rc

  do j = 1, 2
    do i = 1, 3
      t(i, j) = 10 * i + j
    end do
  end do
  gain = 1.0_c_double
  stop = 0
  k = ksdk_create("fortran-host", "python")
  if (k < 0) call fail("create")
  if (ksdk_set_option(k, "safe_points", "1") < 0) call fail("safe_points")
  if (ksdk_expose(k, "t", t) < 0) call fail("expose t")
  if (ksdk_expose(k, "gain", gain, writable=.true.) < 0) call fail("expose gain")
  if (ksdk_expose(k, "stop", stop, writable=.true.) < 0) call fail("expose stop")
  if (ksdk_expose(k, "t_copy", t, writable=.false.) /= KSDK_OK) call fail("expose t_copy")
  if (ksdk_start(k) < 0) call fail("start")
  if (ksdk_start(k) /= KSDK_ESTATE) call fail("second start")
  print '(a, a)', "connection_file ", ksdk_connection_file(k)
  flush (6)
  do while (stop == 0)
    rc = ksdk_poll(k, 0.01_c_double)
    if (rc < 0) call fail("poll")
  end do
  print '(a, f6.2, a)', "gain ", gain, " stopped"
  flush (6)
  if (ksdk_stop(k) < 0) call fail("stop")

contains

  subroutine fail(what)
    character(*), intent(in) :: what
    print '(a, a, a, a)', "fhost: ", what, ": ", ksdk_last_error()
    flush (6)
    error stop 1
  end subroutine fail

end program fhost
