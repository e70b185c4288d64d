// room.html loads this small module on its own, as soon as it arrives: opening the camera
// and the signaling socket take a moment each, and those moments then overlap the loading
// of the rest of the page. room.js gets the same answers later (getLocalMedia(),
// takeEarly()).
import { openEarly } from './early-socket.js';
import { getLocalMedia } from './media.js';

const params = new URLSearchParams(location.search);
// A room display (`?display=1`) opens no camera or microphone of its own accord.
if (params.get('display') !== '1') getLocalMedia();
openEarly(params);
