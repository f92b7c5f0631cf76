"""`paint`: the embedded CPU colorizer for clean line art, no weights needed.

Each frame is split into flat regions (`segment`), and each region holds a
belief: a probability for every color of the keyframes. The local memory carries the
last frame's beliefs over, as far as each region plausibly continues what was there
(`memory_local`). The global memory scores every region against every color:
its shape and the colors around it (`memory_global`), and where it sits in the
character it hangs on (`objects`), and for scenery the rows of the picture it lies
in (`scenery_bands`); no region is taken for a part or prop far smaller than it
ever was, none followed as a part of a character on screen turns into a part of one off
screen, and none beside the backdrop is a part drawn inside its character (`objects`).
Their product is the new belief: the paper's dynamic global-local memory, at region level.
A part counts as many times as a keyframe shows regions of it big enough to be one (two
pupils, two legs, one half behind the coat): only once settled regions hold them all is
another region barred from it. `regions` measures what both memories compare (size, place,
shape, neighbours); `colorizer` runs the frame loop and renders the fills under the lines;
`colored_lines` finds the vivid shadow and highlight lines that take the fill beside them;
`shot_state` turns the shot's whole memory into plain arrays and back, which is what a
checkpoint holds.

Where following is in doubt (a turn-around, a character coming out from behind another
or walking back into the frame) the global memory decides; where a color was followed
cleanly, only a clear contradiction counts, and it must persist over frames to win. A
region's color is its most probable one. Its confidence (the review mask) is how surely
that color was decided when it last was: following a region cleanly re-reads the same
evidence every frame, which makes its belief surer but not truer, so it never raises the
confidence. Ink lines are multiplied over the fills, so anti-aliased and dark colored ink
keep their look.
"""
