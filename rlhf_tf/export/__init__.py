"""Transfer functions in and out of the viewers of the field.

Downstream of render/ and preferences/: nothing upstream imports this
package. One module per idea:

  tables        TFTable (lossless 2D RGBA table with its axes) and
                SeparableTF (1D scalar opacity x gradient opacity + colour,
                what VTK, 3D Slicer and ParaView hold), evaluated on a JH grid.
  separable     the best separable approximation of a 2D table and its error
                (IoU of the supports on the JH).
  nrrd_table    .nrrd writer/reader of a TFTable (pynrrd).
  slicer        3D Slicer volume property: .vp.json and legacy .vp.
  paraview      ParaView transfer-function JSON.
  vtk_script    a ready-to-run VTK script rendering a volume with a TFTable.
  invesalius_presets  InVesalius raycasting presets (.plist) as baselines.
  bundle        every format of one TF into one folder (the propose job).
  vtk_render    optional: VTK's ray casters render an exported TF from the
                project's camera (checks that what we export is what VTK
                shows).
"""
