-- examples/love/conf.lua -- a small window; no audio, joystick, physics or
-- video: the example needs none, and a headless machine (Xvfb, no sound
-- card) may have no device for them.
function love.conf(t)
  t.identity = "moonws-example"
  t.version = "11.4"
  t.window.title = "moonws in LÖVE"
  t.window.width, t.window.height = 480, 160
  t.modules.audio = false
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
  t.modules.video = false
end
